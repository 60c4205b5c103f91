"""The devnet's faucet: SUI and WAL from the devnet's own funded wallet to another address.

A Sui localnet has a faucet (`sui start --with-faucet`) that sends SUI to any address; the
devnet's equivalent is one programmable transaction from the genesis wallet: split the gas
coin and the wallet's WAL, transfer both parts to the address. It lets several accounts use one
devnet (one per machine of a volume, one per test module) without sharing a key: two signers
of one address could lock each other's owned objects, as on the real chain.
"""

from __future__ import annotations

import re
from typing import Any

from chain.client import WalrusChain
from chain.ptb import Ptb
from chain.records import SystemInfo, TxResult
from walrusfs.devnet.launcher import Devnet

#: A Sui address: 32 bytes in hex, 0x-prefixed (shorter forms are zero-padded by the chain,
#: but an address typed by a person is expected whole)
ADDRESS = re.compile(r"0x[0-9a-fA-F]{64}")


async def fund(devnet: Devnet, address: str, *, mist: int, frost: int) -> TxResult:
    """Send `mist` SUI and `frost` WAL (0: none) from the devnet's wallet to `address`.

    Raises:
        ValueError: `address` is not a whole Sui address or `mist` is not positive.
        ServiceError: there is no devnet.
        InsufficientGas, InsufficientWal: the devnet's wallet holds too little.
    """
    if not ADDRESS.fullmatch(address):
        raise ValueError(f"{address!r} is not a Sui address (0x and 64 hex digits)")
    if mist <= 0 or frost < 0:
        raise ValueError("send a positive amount of SUI and no negative WAL")
    chain = WalrusChain(devnet.spec().profile(), devnet.wallet().active)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        (sui,) = ptb.split_coins(ptb.gas(), [ptb.u64(mist)])
        objects = [sui]
        if frost:
            (part,) = ptb.split_coins(wal, [ptb.u64(frost)])
            objects.append(part)
        ptb.transfer(objects, address)

    try:
        return await chain.execute_ptb(build, frost or None)
    finally:
        await chain.close()
