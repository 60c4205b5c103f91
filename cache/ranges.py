"""Recently decoded byte ranges in memory (LRU by bytes): repeated small reads of a file cost
neither disk nor decoding. Keys are (blob ID, offset, length); values are immutable bytes.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache


class RangeCache:
    def __init__(self, limit_bytes: int) -> None:
        self._lru: LRUCache[tuple[bytes, int, int], bytes] = LRUCache(
            maxsize=max(1, limit_bytes), getsizeof=len
        )
        self._lock = threading.Lock()

    def get(self, blob_id: bytes, offset: int, length: int) -> bytes | None:
        with self._lock:
            return self._lru.get((blob_id, offset, length))

    def put(self, blob_id: bytes, offset: int, length: int, data: bytes) -> None:
        if len(data) > self._lru.maxsize:
            return
        with self._lock:
            self._lru[(blob_id, offset, length)] = data

    def forget(self, blob_id: bytes) -> None:
        with self._lock:
            for key in [k for k in self._lru if k[0] == blob_id]:
                del self._lru[key]
