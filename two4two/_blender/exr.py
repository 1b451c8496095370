"""A minimal reader for the uncompressed OpenEXR files the worker writes (numpy only).

Blender's Python module cannot hand a render's pixels to Python in background
mode (the ``Render Result`` image has no pixel buffer and the compositor's
Viewer node is not evaluated when rendering), so the worker saves the render
result, all passes at once, as an uncompressed 32-bit multilayer EXR into a
RAM-backed folder and reads it back here. Only what Blender writes with
``exr_codec='NONE'`` is supported: one part, scan lines, no compression,
HALF/FLOAT/UINT channels without subsampling.
"""

from __future__ import annotations

import struct

import numpy as np

from two4two.errors import Two4TwoError

__all__ = ["ExrError", "read_exr_channels"]

_MAGIC = 20000630
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_MULTIPART_FLAG = 0x1000
_TILED_FLAG = 0x200


class ExrError(Two4TwoError, ValueError):
    """The bytes are not an EXR file this reader supports."""


def _read_cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("latin-1"), end + 1


def _parse_channels(value: bytes) -> list[tuple[str, int]]:
    channels = []
    pos = 0
    while value[pos] != 0:
        name, pos = _read_cstring(value, pos)
        pixel_type, _linear, x_sampling, y_sampling = struct.unpack_from("<iB3xii", value, pos)
        pos += 16
        if (x_sampling, y_sampling) != (1, 1):
            raise ExrError(f"channel {name!r} is subsampled; not supported")
        if pixel_type not in _PIXEL_DTYPES:
            raise ExrError(f"channel {name!r} has unknown pixel type {pixel_type}")
        channels.append((name, pixel_type))
    return channels


def read_exr_channels(data: bytes) -> dict[str, np.ndarray]:
    """Decode an uncompressed single-part scan-line EXR.

    Args:
        data: the file's bytes.

    Returns:
        channel name -> ``[H, W]`` array (float32 for HALF/FLOAT, uint32 for
        UINT), rows from top to bottom as stored (EXR's y grows downwards).

    Raises:
        ExrError: not an EXR, multi-part, tiled, or compressed.
    """
    if len(data) < 8:
        raise ExrError("file too short to be an EXR")
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != _MAGIC:
        raise ExrError("not an OpenEXR file (bad magic number)")
    if version & (_MULTIPART_FLAG | _TILED_FLAG):
        raise ExrError("multi-part or tiled EXR files are not supported")
    pos = 8
    header: dict[str, tuple[str, bytes]] = {}
    while data[pos] != 0:
        name, pos = _read_cstring(data, pos)
        kind, pos = _read_cstring(data, pos)
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        header[name] = (kind, data[pos : pos + size])
        pos += size
    pos += 1  # end of header
    try:
        channels = _parse_channels(header["channels"][1])
        compression = header["compression"][1][0]
        xmin, ymin, xmax, ymax = struct.unpack("<iiii", header["dataWindow"][1])
    except KeyError as missing:
        raise ExrError(f"EXR header lacks the required attribute {missing}") from None
    if compression != 0:
        raise ExrError(f"EXR compression {compression} is not supported (write with codec NONE)")
    width, height = xmax - xmin + 1, ymax - ymin + 1
    dtypes = [_PIXEL_DTYPES[t] for _, t in channels]
    row_bytes = sum(d.itemsize for d in dtypes) * width
    # Offset table (height x uint64); chunks are (int32 y, int32 size, payload). Blender
    # writes them back to back in increasing y, so all of them are read as one record array.
    offsets = np.frombuffer(data, dtype="<u8", count=height, offset=pos)
    record = np.dtype(
        [("y", "<i4"), ("size", "<i4")]
        + [(f"c{i}", d, (width,)) for i, d in enumerate(dtypes)]
    )
    if record.itemsize != 8 + row_bytes:
        raise ExrError("unexpected scan-line layout")
    expected = int(offsets[0]) + record.itemsize * np.arange(height, dtype=np.uint64)
    if not np.array_equal(offsets, expected):
        raise ExrError("EXR scan lines are not stored contiguously; not supported")
    rows = np.frombuffer(data, dtype=record, count=height, offset=int(offsets[0]))
    if np.any(rows["size"] != row_bytes) or np.any(rows["y"] != np.arange(ymin, ymax + 1)):
        raise ExrError("corrupt EXR scan-line table")
    out = {}
    for i, ((name, _), dtype) in enumerate(zip(channels, dtypes, strict=True)):
        out[name] = rows[f"c{i}"].astype(np.float32 if dtype.kind == "f" else np.uint32)
    return out
