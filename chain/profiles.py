"""Where each network's Walrus lives: the Sui gRPC endpoint and the Walrus shared objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkProfile:
    """Where a network's Walrus lives. Package IDs are read from the System object."""

    name: str
    grpc_url: str  # host:port (a hostname: pysui rejects bare IPs)
    tls: bool
    system_object: str
    staking_object: str
    wal_type: str
    exchange_objects: tuple[str, ...] = ()


MAINNET = NetworkProfile(
    "mainnet",
    "fullnode.mainnet.sui.io:443",
    True,
    "0x2134d52768ea07e8c43570ef975eb3e4c27a39fa6396bef985b5abc58d03ddd2",
    "0x10b9d30c28448939ce6c4d6c6e0ffce4a7f8a4ada8248bdad09ef8b70e4a3904",
    "0x356a26eb9e012a68958082340d4c4116e7f55615cf27affcff209cf0ae544f59::wal::WAL",
)
TESTNET = NetworkProfile(
    "testnet",
    "fullnode.testnet.sui.io:443",
    True,
    "0x6c2547cbbc38025cf3adac45f63cb0a8d12ecf777cdc75a4971612bf97fdf6af",
    "0xbe46180321c30aab2f8b3501e24048377287fa708018a5b7c2792b35fe339ee3",
    "0x8270feb7375eee355e64fdb69c50abb6b5f9393a722883c1cf45f8e26048810a::wal::WAL",
    (
        "0xf4d164ea2def5fe07dc573992a029e010dba09b1a8dcbc44c5c2e79567f39073",
        "0x19825121c52080bb1073662231cfea5c0e4d905fd13e95f21e9a018f2ef41862",
        "0x83b454e524c71f30803f4d6c302a86fb6a39e96cdfb873c2d1e93bc1c26a3bc5",
        "0x8d63209cf8589ce7aef8f262437163c67577ed09f3e636a9d8e0813843fb8bf1",
    ),
)
PROFILES = {"mainnet": MAINNET, "testnet": TESTNET}


def devnet_profile(
    port: int, system_object: str, staking_object: str, wal_type: str, exchange: str
) -> NetworkProfile:
    """The stand-in on this machine (plaintext gRPC on localhost)."""
    return NetworkProfile(
        "devnet", f"localhost:{port}", False, system_object, staking_object, wal_type, (exchange,)
    )
