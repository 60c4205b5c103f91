"""Why a volume cannot be mounted, checked or rebuilt as asked.

Each is a failure the user can act on: the message says what is wrong and what to do. They
carry no exit code: the command line maps each class to its documented code in one table
(walrusfs/errors.py, `VOLUME_EXIT_CODES`), so the filesystem does not depend on the CLI.
"""

from __future__ import annotations


class VolumeError(Exception):
    """A volume cannot be used as asked (the message says why and what to do)."""


class BadMountpoint(VolumeError):
    """The mountpoint is missing, not a directory, already mounted, or holds walrusfs's own
    files."""


class VolumeInUse(VolumeError):
    """Another walrusfs process (a mount, or fsck) holds the volume's lock."""


class VolumeClaimed(VolumeError):
    """Another machine holds the volume, or moved it past this machine's copy (writer.py)."""


class SchemaMismatch(VolumeError):
    """The volume database has another schema version than this walrusfs reads."""


class WrongEncryption(VolumeError):
    """The volume's encryption is not what was asked (--public on an encrypted volume), or
    one this walrusfs does not know."""


class ChunkTooLarge(VolumeError):
    """The volume's chunks are larger than a blob of this network holds."""


class MemoryTooSmall(VolumeError):
    """The memory bound (--memory) is below what one upload of the volume's chunks needs."""


class BadKeyFile(VolumeError):
    """The volume's key file does not hold a volume key."""


class KeyMismatch(VolumeError):
    """The key at hand (key file, passphrase, wallet) is not the key of the volume, of its
    checkpoint, or of its file records; or there is no key to derive one from."""


class NothingToRebuild(VolumeError):
    """The chain holds no readable file record of the volume."""


class ServiceFailed(VolumeError):
    """A service the volume needs failed: the chain, the storage nodes, FUSE itself."""


class UploadFailed(ServiceFailed):
    """fsck's upload of staged data did not finish (nothing is lost: it stays staged)."""
