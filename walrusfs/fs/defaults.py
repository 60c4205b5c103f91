"""Every default of a mount, written once.

The command line's help (mountcmd.py, costcmd.py), the `[mount]` table of config.toml
(settings.py), the options of the mount itself (options.py, lifetime.py) and the table in
docs/configuration.md (checked against this by tests/test_defaults.py) all read them here.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class MountDefaults:
    volume: str = "default"
    epochs: int = 10  # storage epochs bought per blob (and added per renewal)
    upload_delay: float = 3.0  # idle seconds before a closed file's chunk is uploaded
    cache_size: int = 16 * GiB  # on-disk caches: slivers (a quarter) and blobs' bytes
    staging_limit: int = 16 * GiB  # staged bytes before writes wait for uploads
    memory: int = 2 * GiB  # RSS bound: daemon and upload worker together
    checkpoint_interval: float = 3600.0  # seconds between metadata checkpoints (if changed)
    read_timeout: float = 20.0  # a read that needs the storage nodes fails with EIO after this
    #: a quilt is compacted when a quilt of its live files alone would be smaller than this
    #: fraction of it (0: never)
    compact_below: float = 0.5
    allow_other: bool = False
    #: new volumes keep their blobs in one Walrus storage pool (walrusfs/fs/pool.py)
    storage_pool: bool = True
    renew: bool = True  # extend blobs before they expire (kept per volume)
    renew_horizon: int = 2  # extend blobs ending within this many epochs (kept per volume)
    #: the upload relay blobs are sent through ("": straight to the storage nodes)
    upload_relay: str = ""
    #: the most MIST of SUI a relay is paid for one blob; a dearer one is uploaded directly
    relay_max_tip: int = 10_000_000


DEFAULTS = MountDefaults()


def size_text(n: int) -> str:
    """A size as the docs and `--help` write it: 2G, 512M, or bytes."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)
