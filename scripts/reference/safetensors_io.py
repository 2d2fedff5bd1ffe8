"""Minimal reader/writer for the safetensors format, with numpy only (no `safetensors` package).

Layout of a file:
  bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
  bytes [8, 8 + N)    UTF-8 JSON: {name: {"dtype": "F32"|"F64"|"I32"|"I64", "shape": [...],
                      "data_offsets": [begin, end]}, "__metadata__": {str: str}}
                      (the writer pads it with spaces to a multiple of 8 bytes)
  bytes [8 + N, ...)  the raw little-endian data; data_offsets are relative to this point.
"""

import json
import struct

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}
NAMES_BY_DTYPE = {np.dtype(v): k for k, v in DTYPES.items()}
HEADER_ALIGNMENT = 8


class SafetensorsError(ValueError):
    """A file that does not follow the format (or uses a dtype this module does not support)."""


def read_safetensors(path):
    """Returns (tensors: name -> numpy array (native byte order, owned), metadata: str -> str)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SafetensorsError(f"{path}: {len(blob)} bytes, shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise SafetensorsError(f"{path}: header length {header_len} runs past the end of the file")
    try:
        header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"{path}: header is not valid JSON: {err}") from err
    data = memoryview(blob)[8 + header_len :]
    metadata = header.pop("__metadata__", None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    tensors = {}
    for name, info in header.items():
        dtype_name = info.get("dtype")
        if dtype_name not in DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {dtype_name!r}")
        dtype = np.dtype(DTYPES[dtype_name])
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end <= len(data) or end - begin != expected_bytes:
            raise SafetensorsError(
                f"{path}: tensor '{name}' offsets [{begin}, {end}) do not hold shape {list(shape)} "
                f"{dtype_name} ({expected_bytes} bytes) inside {len(data)} data bytes"
            )
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return tensors, dict(metadata)


def write_safetensors(path, tensors, metadata=None):
    """Writes name -> numpy array (F32/F64/I32/I64) in name order, with optional str metadata."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        dtype_name = NAMES_BY_DTYPE.get(array.dtype.newbyteorder("<"))
        if dtype_name is None:
            raise SafetensorsError(f"tensor '{name}': unsupported dtype {array.dtype}")
        raw = np.ascontiguousarray(array, dtype=DTYPES[dtype_name]).tobytes()
        header[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("__metadata__ must map strings to strings")
        header["__metadata__"] = dict(metadata)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % HEADER_ALIGNMENT)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)
