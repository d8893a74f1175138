#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets in tests/fuzz/ (NumPy only, no torch).

    tests/fuzz/make_corpus.py OUT_DIR                   seeds in OUT_DIR/<target>/
    tests/fuzz/make_corpus.py OUT_DIR --regressions     also rewrites tests/fuzz/regressions/

Seeds are small valid inputs of each kind (the fuzzer mutates them into invalid ones); the
regression inputs reproduce faults found before, and run.sh replays them before fuzzing. The files
are a pure function of this script and tests/reference/data.
"""

import argparse
import json
import random
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))
from golden_io import read_safetensors, write_safetensors  # noqa: E402

DATA = HERE.parent / "reference" / "data"
MODEL = DATA / "model_small.safetensors"
CONFIG_KEY = "mlstm.lm_model_config"  # where checkpoints store their configuration


def edit_header(path, edit):
    """Rewrites the header of the safetensors file at `path` as edit(header dict) returns it."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = edit(json.loads(raw[8:8 + length]))
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length:])


def tiny_model():
    """The reference model of tests/reference/data cut to one block and 3 tokens (about 40 KB)."""
    tensors, _ = read_safetensors(MODEL)
    tiny = {}
    for name, array in tensors.items():
        if ".blocks.1." in name:
            continue
        tiny[name] = array[:3] if name in ("token_embedding.weight", "lm_head.weight") else array
    return tiny


def tiny_config():
    return {"vocab_size": 3, "embedding_dim": 32, "num_heads": 4, "num_blocks": 1,
            "context_length": 16, "proj_factor": 2.0, "round_proj_up_dim_up": True,
            "round_proj_up_to_multiple_of": 64, "conv1d_kernel_size": 4, "qkv_proj_blocksize": 4,
            "bias": False, "add_post_blocks_norm": True, "tie_weights": False,
            "weight_decay_on_embedding": False}


def safetensors_seeds(out):
    rng = np.random.default_rng(0)
    write_safetensors(out / "empty.safetensors", {})
    write_safetensors(out / "kinds.safetensors", {
        "f64": rng.standard_normal((2, 3)), "f32": rng.standard_normal(4).astype(np.float32),
        "f16": rng.standard_normal((2, 2)).astype(np.float16), "i64": np.arange(3),
        "u64": np.arange(2, dtype=np.uint64), "flags": np.array([True, False, True]),
        "scalar": np.array(1.5), "empty": np.zeros((2, 0))}, {"format": "pt", "note": "seed"})
    # The dtypes NumPy does not write, as renamed ones of the same element size.
    renamed = {"f16": "BF16", "f32": "I32", "f64": "U32", "i64": "I16", "u64": "U16", "flags": "U8"}
    write_safetensors(out / "renamed.safetensors", {
        "f16": np.ones(2, np.float16), "f32": np.ones(2, np.float32), "f64": np.ones(1),
        "i64": np.ones(2, np.int64), "u64": np.ones(2, np.uint64), "flags": np.ones(3, bool)})

    def rename(header):
        for name, dtype in renamed.items():
            begin, end = header[name]["data_offsets"]
            size = {"BF16": 2, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "U8": 1}[dtype]
            header[name] = dict(header[name], dtype=dtype, shape=[(end - begin) // size])
        return header
    edit_header(out / "renamed.safetensors", rename)


def lm_checkpoint_seeds(out):
    model = tiny_model()
    write_safetensors(out / "tiny_f32.safetensors", model)
    write_safetensors(out / "tiny_f16.safetensors",
                      {name: array.astype(np.float16) for name, array in model.items()})
    write_safetensors(out / "tiny_with_config.safetensors", model,
                      {CONFIG_KEY: json.dumps(tiny_config())})
    tied = {name: array for name, array in model.items() if name != "token_embedding.weight"}
    write_safetensors(out / "tiny_head_only.safetensors", tied)


def config_json_seeds(out):
    config = tiny_config()
    (out / "tiny.json").write_text(json.dumps(config))
    (out / "tied_bias.json").write_text(json.dumps(dict(config, tie_weights=True, bias=True)))
    (out / "inner.json").write_text(json.dumps(dict(config, inner_embedding_dim=64)))
    (out / "empty.json").write_text("{}")
    (out / "partial.json").write_text('{"vocab_size": 7, "proj_factor": 1.5}')


def kernels_seeds(out):
    rng = random.Random(0)
    for index, length in enumerate([8, 32, 96, 256, 512]):
        (out / f"random_{index}.bin").write_bytes(bytes(rng.randrange(256) for _ in range(length)))


def tokenizer_seeds(out):
    """tokenizer.json, a zero byte, then text to encode (the corpus of the tokenizer's tests)."""
    tokenizer = (DATA / "tokenizer.json").read_bytes()
    corpus = json.loads((DATA / "tokenizer_golden.json").read_text())["corpus"]
    for index, case in enumerate(corpus[1::5]):
        (out / f"corpus_{index}.bin").write_bytes(tokenizer + b"\0" + case["text"].encode("utf-8"))
    (out / "no_text.json").write_bytes(tokenizer)


def xlstm_large_seeds(out):
    """A flag byte (low bit: bfloat16 weights), the length of config.json as 16 bits, config.json,
    then model.safetensors: the golden models of the xLSTM-Large tests in both spellings."""
    def seed(name, config, tensors, bfloat16_weights, stored_bfloat16=False):
        path = out / f"{name}.safetensors"
        if stored_bfloat16:  # the upper halves of the float32 values, stored as BF16
            tensors = {key: (value.astype("<f4").view("<u4") >> 16).astype("<u2").view("<f2")
                       for key, value in tensors.items()}
        write_safetensors(path, tensors)
        if stored_bfloat16:
            edit_header(path, lambda h: {k: dict(v, dtype="BF16") if k != "__metadata__" else v
                                         for k, v in h.items()})
        text = config.encode("utf-8")
        path.write_bytes(bytes([bfloat16_weights]) + struct.pack("<H", len(text)) + text +
                         path.read_bytes())

    tensors, metadata = read_safetensors(DATA / "xlstm_large_single.safetensors")
    seed("reference_single", metadata["config"], tensors, False)
    seed("reference_single_bf16", metadata["config"], tensors, True, stored_bfloat16=True)
    fused, metadata = read_safetensors(DATA / "xlstm_large_fused_bias.safetensors")
    seed("reference_fused_bias", metadata["config"], fused, True)
    folder = DATA / "xlstm_large_hf"
    shards = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        shards.update(read_safetensors(shard)[0])
    seed("transformers", (folder / "config.json").read_text(), shards, False)


def regressions(out):
    """The inputs of faults found before, by hand or by these fuzz targets."""
    st, lm, config = out / "safetensors", out / "lm_checkpoint", out / "config_json"
    for folder in (st, lm, config):
        folder.mkdir(parents=True, exist_ok=True)

    # A number past double's range threw nlohmann's out_of_range instead of a ValueError (the
    # language model's configuration, then xLSTM-Large's config.json).
    (config / "number_overflow.json").write_text("43E443E4")
    large = out / "xlstm_large"
    large.mkdir(parents=True, exist_ok=True)
    text = b'{"embedding_dim": 1e406}'
    (large / "config_number_overflow.bin").write_bytes(b"\0" + struct.pack("<H", len(text)) + text)

    # A zero-size tensor whose other dimensions overflow any element count: (2^62, 4, 0).
    for folder in (st, lm):
        path = folder / "zero_size_huge_dimensions.safetensors"
        write_safetensors(path, {"w": np.zeros((1, 4, 0), np.float32)})
        edit_header(path, lambda h: dict(h, w=dict(h["w"], shape=[2**62, 4, 0])))

    # Stored configurations asking for 16 GiB and 0.5 GiB of parameters, with no tensors.
    for name, vocab, dim in (("config_vocab_2p22", 2**22, 1024), ("config_vocab_2p18", 2**18, 512)):
        config = dict(tiny_config(), vocab_size=vocab, embedding_dim=dim)
        write_safetensors(lm / f"{name}.safetensors", {}, {CONFIG_KEY: json.dumps(config)})

    # A conv1d weight declared (0, 1, 2^31) in 0 bytes: the inferred kernel size is 2^31.
    path = lm / "conv_kernel_2p31.safetensors"
    model = tiny_model()
    conv = "xlstm_block_stack.blocks.0.xlstm.conv1d.conv.weight"
    model[conv] = np.zeros((0, 1, 4), np.float32)
    write_safetensors(path, model)
    edit_header(path, lambda h: dict(h, **{conv: dict(h[conv], shape=[0, 1, 2**31])}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--regressions", action="store_true",
                        help="also rewrite the regression inputs in tests/fuzz/regressions/")
    args = parser.parse_args()
    for target, make in (("safetensors", safetensors_seeds), ("lm_checkpoint", lm_checkpoint_seeds),
                         ("config_json", config_json_seeds), ("kernels", kernels_seeds),
                         ("tokenizer", tokenizer_seeds), ("xlstm_large", xlstm_large_seeds)):
        folder = args.out_dir / target
        folder.mkdir(parents=True, exist_ok=True)
        make(folder)
    if args.regressions:
        regressions(HERE / "regressions")


if __name__ == "__main__":
    main()
