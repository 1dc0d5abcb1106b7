"""Filesystem hints for the data root."""

import fcntl
import logging
import os
import struct

log = logging.getLogger(__name__)

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def mark_topdir(path):
    """Set ext2/3/4's "top of directory hierarchy" flag (chattr +T) on `path`.

    ext4's Orlov allocator then spreads the directories made below it (one
    per import, per container) over block groups with free room, instead of
    packing them next to their parent where recently deleted layers left
    inodes that ext4 must step over. Measured here: extracting a 200 MB tar
    right after deleting the previous one took 1.2-1.4 s without the flag
    and 0.3-0.8 s with it. Other filesystems refuse the ioctl; that is fine.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        log.debug("no TOPDIR flag on %s: %s", path, e)
        return
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        flags = struct.unpack_from("i", buf)[0]
        if not flags & FS_TOPDIR_FL:
            struct.pack_into("i", buf, 0, flags | FS_TOPDIR_FL)
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf)
    except OSError as e:
        log.debug("no TOPDIR flag on %s: %s", path, e)
    finally:
        os.close(fd)
