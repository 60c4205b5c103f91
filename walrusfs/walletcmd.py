"""`walrusfs wallet`: the wallet's address and balances, and WAL from the devnet/testnet
exchange (the way to fund uploads that paused for lack of WAL)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from chain.pricing import format_wal
from walrusfs.clihelpers import COIN_UNIT, coin_amount, open_chain, run_async
from walrusfs.errors import UsageError


def cmd_wallet(args: argparse.Namespace) -> int:
    """The wallet's address, SUI (gas) and WAL (storage) balances."""

    async def go() -> int:
        async with open_chain() as chain:
            bal = await chain.balances()
            info = await chain.system_info()
        if args.json:
            print(
                json.dumps(
                    {"address": chain.address, "sui": bal.sui, "wal": bal.wal, "epoch": info.epoch},
                    indent=2,
                )
            )
            return 0
        print(f"address  {chain.address}")
        print(f"SUI      {bal.sui / COIN_UNIT:.9f} SUI (gas)")
        print(f"WAL      {format_wal(bal.wal)} (storage and write fees)")
        return 0

    return run_async(go)


def cmd_get_wal(args: argparse.Namespace) -> int:
    """Swap SUI for WAL at the network's exchange (devnet and testnet; on mainnet, buy WAL)."""
    if args.sui is None:
        raise UsageError("say how much SUI to swap, e.g. `walrusfs wallet get-wal 5`")

    async def go() -> int:
        async with open_chain() as chain:
            before = (await chain.balances()).wal
            await chain.get_wal(args.sui)
            after = (await chain.balances()).wal
        print(f"got {format_wal(after - before)}; the wallet holds {format_wal(after)}")
        return 0

    return run_async(go)


def add_parser(sub: Any) -> None:
    w = sub.add_parser("wallet", help=cmd_wallet.__doc__, description=cmd_wallet.__doc__)
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_wallet)
    wsub = w.add_subparsers(dest="wallet_command", metavar="ACTION")
    p = wsub.add_parser("get-wal", help=cmd_get_wal.__doc__, description=cmd_get_wal.__doc__)
    p.add_argument(
        "sui", type=coin_amount("SUI"), nargs="?", metavar="SUI", help="SUI to swap (e.g. 5)"
    )
    p.set_defaults(func=cmd_get_wal)
