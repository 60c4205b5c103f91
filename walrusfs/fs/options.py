"""What a mount is told: its options, and the limits derived from the network and the volume.

Kept apart from the modules that act on them, so that the command line (mountcmd.py), the
cost estimate (costcmd.py), the volume and fsck read one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import codec
from walrusfs.fs import crypto
from walrusfs.fs.defaults import DEFAULTS

CHUNK_SIZE = 64 << 20  # chunk size of new volumes (capped at the network's max blob size)


@dataclass(frozen=True)
class UploadConfig:
    delay: float = DEFAULTS.upload_delay  # idle seconds before a closed file's chunk uploads
    epochs: int = DEFAULTS.epochs  # storage epochs bought per blob
    quilt_threshold: int = 4 << 20  # single-chunk files up to this size go into quilts
    jobs: int = 2  # uploads (blob or quilt) at once; each holds ~10x its bytes while encoding
    retry_after: float = 15.0  # first back-off after a failed upload (doubles, up to 5 min)
    #: a quilt is compacted when a quilt of its live files alone would be smaller than this
    #: fraction of it (0: never)
    compact_below: float = DEFAULTS.compact_below
    #: the upload relay the worker sends blobs through ("": to the nodes), and its budget
    relay_url: str = DEFAULTS.upload_relay
    relay_max_tip: int = DEFAULTS.relay_max_tip  # MIST per blob


@dataclass(frozen=True)
class MountOptions:
    mountpoint: Path
    volume_dir: Path  # <data_dir>/volumes/<name>: meta.db, staging/, mount.log
    cache_dir: Path  # sliver cache
    chunk_size: int = CHUNK_SIZE  # for new volumes; capped at the network's max blob size
    cache_bytes: int = DEFAULTS.cache_size  # on-disk caches (slivers, blobs' bytes)
    memory_bytes: int = DEFAULTS.memory  # RSS bound: segment cache + concurrent encodes
    staging_limit: int = DEFAULTS.staging_limit  # staged bytes before writes wait for uploads
    allow_other: bool = DEFAULTS.allow_other
    public: bool = False  # new volumes only: store plaintext (no encryption)
    #: new volumes only: keep blobs and quilts in one storage pool (walrusfs/fs/pool.py)
    storage_pool: bool = DEFAULTS.storage_pool
    checkpoint_interval: float = DEFAULTS.checkpoint_interval  # seconds, if the metadata changed
    renew: bool | None = None  # None: the volume's stored policy (default on)
    renew_horizon: int | None = None  # epochs before the end epoch a blob is extended
    renew_epochs: int | None = None  # epochs added per extension (default: --epochs)
    upload: UploadConfig = field(default_factory=UploadConfig)
    #: serve the volume read-only: every change is refused with EROFS, nothing uploads
    read_only: bool = False
    #: a read that needs the storage nodes fails with EIO after this many seconds
    read_timeout: float = DEFAULTS.read_timeout
    #: the volume key comes from this passphrase (never stored; kept out of repr and logs)
    passphrase: str | None = field(default=None, repr=False)


def memory_floor(chunk_size: int) -> int:
    """The least `--memory` that holds for a volume of `chunk_size` chunks: the daemon and the
    worker as they start (~100 MiB each), the segment cache (an eighth of the bound), and one
    upload, whose worker peaks at about 8x its chunk over its base (measured with
    `bench/fs.py --memory`, docs/mount.md, Memory). Below it the bound could not hold: one
    upload alone exceeds it (a 512 MiB bound measured 743 MiB)."""
    need = ((256 << 20) + 8 * chunk_size) * 8 // 7
    return -(-need >> 20) << 20  # a whole MiB, rounded up: the figure the message names


def largest_chunk(params: codec.EncodingParams, *, encrypted: bool) -> int:
    """The largest chunk one blob of this network holds; an encrypted chunk is stored sealed
    (header and tags), so its plaintext must be that much smaller."""
    return crypto.max_plain(params.max_blob_size) if encrypted else params.max_blob_size
