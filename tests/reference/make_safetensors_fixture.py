#!/usr/bin/env -S /usr/bin/python3
"""Writes tests/reference/data/safetensors_fixture.safetensors for test_safetensors.cpp.

Run with Debian's python (it has torch): /usr/bin/python3 tests/reference/make_safetensors_fixture.py
The output is deterministic.

The file holds a small state dict of every dtype the reader must understand, laid out as
PyTorch's safetensors writer lays files out (tensors ordered by element size, then name), and
the values the C++ reader must produce, computed by torch in a second form:

    f32, f16, bf16, bool, i32, u8, scalar, empty   the tensors under test
    expected.<name>                                 the same values converted to F64 by torch
    f64, i64                                        checked against exact text in the metadata:
    __metadata__["f64.hex"]                         float.hex() of every f64 element
    __metadata__["i64.decimal"]                     every i64 element in decimal
    rounding.source                                 F32 values around the F16/BF16 rounding ties
    rounding.f16, rounding.bf16                     rounding.source converted by torch

The writer below is written from the format description (8-byte little-endian header length,
JSON header, little-endian row-major data), independently of the C++ one. If the `safetensors`
package happens to be importable, the script also loads the file with it and checks that every
tensor and the metadata come back unchanged.
"""

import json
import math
import os
import struct

import torch

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                      "safetensors_fixture.safetensors")

DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.int32: "I32", torch.int64: "I64",
}


def little_endian_bytes(tensor):
    tensor = tensor.contiguous()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        array = tensor.view(torch.int16).numpy()
    elif tensor.dtype == torch.bool:
        array = tensor.to(torch.uint8).numpy()
    else:
        array = tensor.numpy()
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors, metadata):
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name in order:
        data = little_endian_bytes(tensors[name])
        header[name] = {"dtype": DTYPE_NAMES[tensors[name].dtype],
                        "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for data in chunks:
            out.write(data)


def with_specials(random_values, specials):
    values = random_values.flatten().clone()
    values[:len(specials)] = torch.tensor(specials, dtype=values.dtype)
    return values.reshape(random_values.shape)


def rounding_sources():
    """F32 values on, beside and between F16/BF16 rounding ties, over the whole range."""
    values = [
        1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-23, 1 + 2**-11 - 2**-23,  # F16 ties near 1
        65504.0, 65519.0, 65520.0, 65536.0, 1e6, -65520.0,                   # F16 overflow
        2**-14, 2**-24, 2**-25, 3 * 2**-25, 2**-25 + 2**-40, 2**-26,          # F16 subnormals
        1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-23, -(1 + 2**-8),          # BF16 ties near 1
        2**-126, 2**-133, 2**-134, 3 * 2**-134, 1e-40,                        # BF16 subnormals
        3.3895313892515355e38, 3.4028234663852886e38, -3.4028234663852886e38,  # BF16 overflow
        0.0, -0.0, math.inf, -math.inf, math.nan, 1 / 3, -0.1,
    ]
    generator = torch.Generator().manual_seed(1)
    scales = torch.pow(2.0, torch.arange(-30, 21, dtype=torch.float64)).repeat(4)
    spread = torch.randn(len(scales), generator=generator, dtype=torch.float64) * scales
    return torch.cat([torch.tensor(values, dtype=torch.float64), spread]).to(torch.float32)


def main():
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "f32": with_specials(torch.randn(3, 4, generator=generator),
                             [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-40, 3.4028234663852886e38]),
        "f16": with_specials(torch.randn(2, 3, 4, generator=generator).to(torch.float16),
                             [0.0, -0.0, 2**-14, 2**-24, 1023 * 2**-24, 65504.0, -65504.0,
                              math.inf, -math.inf, math.nan, 1 / 3]),
        "bf16": with_specials(torch.randn(4, 5, generator=generator).to(torch.bfloat16),
                              [0.0, -0.0, 2**-126, 2**-133, 127 * 2**-133, 3.3895313892515355e38,
                               math.inf, -math.inf, math.nan, 1 / 3]),
        "bool": torch.tensor([[True, False, True], [False, False, True]]),
        "i32": torch.tensor([-2**31, 7, 2**31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "f64": torch.tensor([math.pi, -1e-300, 5e-324, 1.7976931348623157e308, -math.inf, math.nan],
                            dtype=torch.float64),
        "i64": torch.tensor([0, -1, 2**53 + 1, -2**63, 2**63 - 1], dtype=torch.int64),
    }
    for name in ["f32", "f16", "bf16", "bool", "i32", "u8", "scalar", "empty"]:
        tensors["expected." + name] = tensors[name].to(torch.float64)
    source = rounding_sources()
    tensors["rounding.source"] = source
    tensors["rounding.f16"] = source.to(torch.float16)
    tensors["rounding.bf16"] = source.to(torch.bfloat16)
    metadata = {
        "format": "pt",
        "generator": "tests/reference/make_safetensors_fixture.py",
        "f64.hex": ",".join(float(x).hex() for x in tensors["f64"].tolist()),
        "i64.decimal": ",".join(str(x) for x in tensors["i64"].tolist()),
    }
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    write_safetensors(OUTPUT, tensors, metadata)
    print(f"wrote {OUTPUT} ({os.path.getsize(OUTPUT)} bytes, {len(tensors)} tensors)")
    check_with_safetensors_package(tensors, metadata)


def check_with_safetensors_package(tensors, metadata):
    try:
        from safetensors import safe_open
    except ImportError:
        print("safetensors package not importable: skipped the cross-check")
        return
    with safe_open(OUTPUT, framework="pt") as loaded:
        assert loaded.metadata() == metadata
        assert sorted(loaded.keys()) == sorted(tensors)
        for name, expected in tensors.items():
            got = loaded.get_tensor(name)
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            assert little_endian_bytes(got) == little_endian_bytes(expected), name
    print("safetensors package reads the file back unchanged")


if __name__ == "__main__":
    main()
