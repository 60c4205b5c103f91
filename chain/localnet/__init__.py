"""The local Sui stand-in: a gRPC `sui.rpc.v2` server with Walrus contract semantics."""
