"""walrusfs: a FUSE filesystem over Walrus decentralized storage.

`store/` talks to storage nodes and the chain, `fs/` is the mount, `devnet/` the local network,
`cli.py` the command line. Protocol details live in `codec` and `chain`, not here.
"""

__version__ = "0.1.0"
