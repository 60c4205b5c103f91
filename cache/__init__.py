"""Local storage of blob data: the on-disk sliver/blob cache and the crash-safe staging area.

No network access here; callers hand bytes in and get bytes out.
"""

#: A staged chunk, `(inode, chunkno)`: the staging area's modules and its callers name chunks so.
Key = tuple[int, int]
