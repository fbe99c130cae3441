"""A minimal PNG writer (8-bit RGB, no interlace) with zlib alone, so maps are written the same way
in Blender (which has no OpenCV/Pillow) and in the engine env, byte for byte.

Written atomically: to a temporary file in the same folder, then renamed over the target, so a
reader never sees half a map.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 3) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image (filter type 0 on every row). Level 3: skeleton
    maps are mostly black, so it is twice as fast as 6 for files of ~15 KiB instead of ~8 KiB."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    rows = np.zeros((height, 1 + width * 3), dtype=np.uint8)  # leading 0 per row = filter "None"
    rows[:, 1:] = image.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, RGB, deflate, no filter, no interlace
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b"")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes to path via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file 0600; give it the mode any other new file gets (the umask's), as
        # the frames have: shared storage and render farms read these files as other users.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    """The process's umask: from /proc on Linux (no change to it, so no race with other
    threads), else by setting it and straight back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_png(path: str | Path, image: np.ndarray) -> None:
    write_atomic(path, encode_png(image))
