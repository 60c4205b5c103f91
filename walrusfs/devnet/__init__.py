"""The local Walrus network: storage-node server, launcher of nodes and Sui stand-in."""
