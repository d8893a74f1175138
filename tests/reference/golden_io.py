"""Minimal safetensors writer and reader for the golden data of the C++ tests.

Usable from any script in this folder:

    from golden_io import write_safetensors, read_safetensors
    write_safetensors(path, {"x": numpy_or_torch_array}, {"key": "value"})
    tensors, metadata = read_safetensors(path)      # tensors as NumPy arrays

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes
of JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`
padded with spaces to a multiple of 8, then each tensor's little-endian row-major bytes.
Tensor names are written in sorted order, so a file is a pure function of its contents.
Supported dtypes: F64, F32, F16, BF16 (from torch.bfloat16 tensors; read back as float32),
I64, U64, BOOL (one byte per element).
"""

import json
import struct

import numpy as np

__all__ = ["write_safetensors", "read_safetensors"]

_NUMPY_OF = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<i2", "I64": "<i8", "U64": "<u8",
             "BOOL": "|u1"}
_DTYPE_OF = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
             np.dtype("int64"): "I64", np.dtype("uint64"): "U64", np.dtype("bool"): "BOOL"}


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor; torch itself is not needed otherwise
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: write the 16 bits
            import torch
            return np.ascontiguousarray(value.contiguous().view(torch.int16).numpy()), "BF16"
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype not in _DTYPE_OF:
        raise TypeError(f"unsupported dtype {array.dtype}")
    dtype = _DTYPE_OF[array.dtype]
    return np.ascontiguousarray(array.astype(_NUMPY_OF[dtype])), dtype


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> NumPy array or torch tensor) and string `metadata`."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        array, dtype = _to_numpy(tensors[name])
        blob = array.tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    metadata = metadata or {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise TypeError(f"metadata {key!r} must be a string, got {type(value).__name__}")
    header["__metadata__"] = {key: metadata[key] for key in sorted(metadata)}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)


def read_safetensors(path):
    """Return (tensors as NumPy arrays, metadata dict)."""
    with open(path, "rb") as src:
        raw = src.read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size].decode("ascii"))
    data = raw[8 + size:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    covered = 0
    for name, info in header.items():
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=_NUMPY_OF[info["dtype"]])
        if info["dtype"] == "BOOL":
            array = array.astype(bool)
        elif info["dtype"] == "BF16":  # the upper half of a float32
            array = (array.astype("<u2").astype("<u4") << 16).view("<f4")
        tensors[name] = array.reshape(info["shape"]).copy()
        covered = max(covered, end)
    if covered != len(data):
        raise ValueError(f"{path}: data section has {len(data)} bytes, header covers {covered}")
    return tensors, metadata
