"""What the staged chunks take: each one's apparent size and its bytes on disk.

The staging limit counts bytes on disk (`total`): the allocated blocks of a chunk file
(st_blocks, so a sparse 64 MiB chunk holding a few KiB costs a few KiB) and the length of a
small.db row. Apparent sizes say how long a chunk is; counted against the limit they would
hold a tree of sparse files (fsstress: 16.9 GB apparent, 174 MB on disk) against a 16 GiB
limit and answer ENOSPC with the disk nearly empty.
"""

from __future__ import annotations

from collections.abc import Iterator

from cache import Key


class Usage:
    """Apparent sizes and bytes on disk of the staged chunks, and the sum of the latter.

    A chunk is known here once it has a size; forgetting its size forgets its bytes on disk.
    """

    def __init__(self) -> None:
        self._sizes: dict[Key, int] = {}  # apparent sizes (bytes up to the last written)
        self._alloc: dict[Key, int] = {}  # bytes on disk: file blocks, or the row's length
        self._total = 0  # sum of _alloc

    def __contains__(self, key: Key) -> bool:
        return key in self._sizes

    def __iter__(self) -> Iterator[Key]:
        return iter(self._sizes)

    def size(self, key: Key) -> int:
        """The chunk's apparent size (0 for a chunk not staged)."""
        return self._sizes.get(key, 0)

    def allocated(self, key: Key) -> int:
        """Bytes the chunk takes on disk (0 for a chunk that is all hole)."""
        return self._alloc.get(key, 0)

    @property
    def total(self) -> int:
        """Bytes all staged chunks take on disk."""
        return self._total

    def set_size(self, key: Key, size: int | None) -> None:
        """Record the chunk's apparent size; None forgets the chunk (its bytes on disk too)."""
        if size is None:
            self._sizes.pop(key, None)
            self.set_allocated(key, None)
        else:
            self._sizes[key] = size

    def set_allocated(self, key: Key, nbytes: int | None) -> None:
        """Record the bytes the chunk takes on disk; None for none."""
        self._total += (nbytes or 0) - self._alloc.get(key, 0)
        if nbytes is None:
            self._alloc.pop(key, None)
        else:
            self._alloc[key] = nbytes
