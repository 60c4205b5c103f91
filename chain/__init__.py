"""Sui access for Walrus: wallet, pysui gRPC client, Walrus contract calls, System/Blob decoding.

`chain/localnet/` is the local Sui stand-in (gRPC `sui.rpc.v2`, SQLite ledger) used by the
devnet. This package knows nothing about files; it may import `codec` for blob-ID types only.
"""
