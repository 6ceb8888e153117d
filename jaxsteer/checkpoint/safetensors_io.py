"""A small, strict safetensors reader/writer over ``mmap`` (bf16 through ``ml_dtypes``).

Written here rather than taken from ``safetensors.numpy`` because that cannot hold bfloat16 and
because a checkpoint loader must stream one tensor at a time and name a truncated file precisely.
Format: 8-byte little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}``
(offsets relative to the end of the header), then the raw little-endian data.
"""

from __future__ import annotations

import json
import mmap
import os
import struct

import ml_dtypes
import numpy as np

from jaxsteer.errors import CheckpointError
from jaxsteer.results import commit, temp_file

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


MAX_HEADER = 100_000_000  # bytes: the limit the safetensors library itself enforces


def _checked_header(header, path: str) -> tuple[dict[str, str], dict[str, dict]]:
    """``(metadata, tensors)`` of a parsed header, checked as the safetensors library checks it: metadata maps
    strings to strings; each tensor has a dtype name, a shape of non-negative ints and offsets
    ``0 ≤ begin ≤ end`` that, sorted, tile the data from 0 without gaps or overlaps — otherwise a header could
    point a tensor at the header's own bytes or at another tensor's, and they would load as weights."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not an object of tensors")
    header = dict(header)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: safetensors __metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        ok = isinstance(info, dict) and isinstance(info.get("dtype"), str)
        shape, offsets = (info.get("shape"), info.get("data_offsets")) if ok else (None, None)
        ok = ok and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1]:
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry {json.dumps(info)[:120]}")
        spans.append((offsets[0], offsets[1], name))
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise CheckpointError(f"{path}: tensor {name!r} starts at byte {begin} of the data, expected {at}")
        at = end
    return metadata, header


class SafetensorsFile:
    """Lazily readable tensors of one ``.safetensors`` file; ``get`` returns a read-only view."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = None
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 (kept open for the mmap)
            size = os.fstat(self._file.fileno()).st_size
            if size < 8:
                raise CheckpointError(f"{self.path} is truncated: {size} bytes, not a safetensors file")
            (header_len,) = struct.unpack("<Q", self._file.read(8))
            if header_len > min(size - 8, MAX_HEADER):
                raise CheckpointError(f"{self.path} is truncated or not safetensors (header of {header_len} bytes)")
            header = json.loads(self._file.read(header_len))
            self.metadata, self._header = _checked_header(header, self.path)
            self._start = 8 + header_len
            end = max((t["data_offsets"][1] for t in self._header.values()), default=0)
            if self._start + end > size:
                raise CheckpointError(
                    f"{self.path} is truncated: tensors need {self._start + end} bytes, the file has {size}"
                )
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except OSError as e:
            self._abandon()
            raise CheckpointError(f"cannot read {self.path}: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            self._abandon()
            raise CheckpointError(f"{self.path} has an unreadable safetensors header") from None
        except CheckpointError:
            self._abandon()
            raise

    def _abandon(self) -> None:
        if self._file is not None:
            self._file.close()

    def names(self) -> list[str]:
        return list(self._header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def dtype_name(self, name: str) -> str:
        """The header's dtype name (``BF16``, ``F32``, ``I8``, …)."""
        return self._header[name]["dtype"]

    def get(self, name: str) -> np.ndarray:
        info = self._header[name]
        if info["dtype"] not in _DTYPES:
            raise CheckpointError(f"{self.path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_DTYPES[info["dtype"]])
        begin, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != count * dtype.itemsize:
            raise CheckpointError(f"{self.path}: tensor {name} has {end - begin} bytes for shape {info['shape']}")
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=self._start + begin).reshape(info["shape"])

    def close(self) -> None:
        # Views handed out by ``get`` may still be alive; dropping the map lets the GC unmap it
        # once they are gone (closing it now would raise BufferError).
        self._map = None
        self._abandon()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict | None = None):
    """Write atomically (temporary file, then ``os.replace``); tensors keep their dtype."""
    path = os.fspath(path)
    header, offset, arrays = {}, 0, []
    for name, value in tensors.items():
        arr = np.asarray(value)
        arr = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes a 0-d array 1-d
        if arr.dtype not in _NAMES:
            raise CheckpointError(f"cannot store tensor {name} of dtype {arr.dtype} in safetensors")
        header[name] = {
            "dtype": _NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays.append(arr)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = temp_file(folder, suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for arr in arrays:
                f.write(arr.tobytes())
        commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
