"""The mount's read-ahead setting (walrusfs/fs/readahead.py): which device a mountpoint is,
read from mountinfo without a syscall on the mount itself."""

from __future__ import annotations

from pathlib import Path

from walrusfs.fs.readahead import device_of

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /home/ann/my\\040drive rw,nosuid,nodev,noatime shared:2 - fuse.walrusfs walrusfs:a rw
46 22 0:41 / /mnt/w rw - fuse.walrusfs walrusfs:b rw
47 22 0:42 / /mnt/w rw - fuse.walrusfs walrusfs:c rw
"""


def test_the_device_of_a_mountpoint_with_a_space_in_its_name() -> None:
    assert device_of(Path("/home/ann/my drive"), MOUNTINFO) == "0:40"


def test_the_last_mount_on_a_mountpoint_is_the_one_that_answers() -> None:
    assert device_of(Path("/mnt/w"), MOUNTINFO) == "0:42"


def test_a_path_nothing_is_mounted_on() -> None:
    assert device_of(Path("/mnt/other"), MOUNTINFO) is None
