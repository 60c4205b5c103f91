"""The Walrus chain client against the Sui stand-in, in process over real gRPC."""
