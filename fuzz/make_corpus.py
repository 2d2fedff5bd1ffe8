#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the repository's recipes
and test fixtures, plus small files made here. Run from the repository root; the seeds are committed
(docs/FUZZING.md), this script says where each came from. The checkpoint_bytes seed is the index
and shard of a real checkpoint: pass its directory as the first argument to include them. The one
committed is a 2-layer model of tiny.yaml's shape, one rank, one step (docs/FUZZING.md has the command)."""
import base64
import json
import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
MISTRAL_DATA = Path.home() / ".cache/tramontane/mistral-common-1.13.1/mistral_common/data"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def shard(tokens, width, vocab):
    body = b"".join(struct.pack("<H" if width == 2 else "<I", t) for t in tokens)
    return b"TMTSHARD" + struct.pack("<IIQII", 1, width, len(tokens), vocab, 0) + body


def safetensors(tensors, metadata=None, dtype="F32", size=4):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, shape in tensors:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n * size]}
        data += bytes((i * 7) % 251 for i in range(n * size))
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    # recipe: every recipe of recipes/ and the bad recipes the tests hold.
    for p in sorted((ROOT / "recipes").glob("*.yaml")):
        put("recipe", p.name, p.read_bytes())
    for p in sorted((ROOT / "tests/trainer/bad_recipes").glob("*.yaml")):
        put("recipe", "bad_" + p.name, p.read_bytes())
    for p in sorted((ROOT / "tests/fixtures/reference").glob("*.yaml")):
        put("recipe", "ref_" + p.name, p.read_bytes())
    # overrides: one --set flag a line.
    flags = [
        ["train.steps=3", "model.d_model=64"],
        ["model.moe.top_k=1", "model.moe.n_experts=4", "parallel.ep=2", "parallel.tp=2"],
        ["parallel.pp=2", "parallel.pp_layers=[1, 1]", "train.micro_batch=1"],
        ["optimizer.lr=3e-4", "schedule.warmup_steps=0", "train.recompute=selective"],
        ["data.source=shards", "data.train=[a.bin]", "data.seq_len=16"],
        ["model.attention=mla", "model.mla.kv_lora_rank=16"],
        ["model.rope_scaling.type=yarn", "model.rope_scaling.factor=4"],
        ["train.dtype=bf16", "parallel.zero1=true", "log.every=1"],
        ["model={}", "checkpoint.every=-1"],
    ]
    for i, f in enumerate(flags):
        put("overrides", f"flags{i}.txt", "\n".join(f))
    # shard: the fixtures' small shards and a few made here.
    for p in [ROOT / "tests/fixtures/hf/data128/val/shard-00000.bin",
              ROOT / "tests/fixtures/hf/data32k/train/shard-00000.bin"]:
        put("shard", p.parent.parent.name + "_" + p.parent.name + ".bin", p.read_bytes())
    put("shard", "u16.bin", shard(list(range(40)), 2, 128))
    put("shard", "u32.bin", shard([70000 + i for i in range(12)], 4, 131072))
    put("shard", "empty.bin", shard([], 2, 0))
    # safetensors: made here (one tensor per dtype, metadata, an empty tensor) and the fixture
    # that is smallest.
    put("safetensors", "f32.safetensors", safetensors([("a", [2, 3]), ("b", [4])], {"format": "pt"}))
    put("safetensors", "bf16.safetensors", safetensors([("w", [3, 2])], None, "BF16", 2))
    put("safetensors", "f8.safetensors", safetensors([("w", [4, 4]), ("w.qscale_weight", [])], None, "F8_E4M3", 1))
    put("safetensors", "empty_tensor.safetensors", safetensors([("e", [0, 5]), ("s", [])]))
    put("safetensors", "mixtral_3.safetensors",
        (ROOT / "tests/fixtures/hf/mixtral/model-00003-of-00003.safetensors").read_bytes())
    # published: the fixtures' configs; byte 0 even = config.json, odd = params.json.
    for p in sorted(ROOT.glob("tests/fixtures/**/config.json")):
        put("published", "hf_" + p.parent.name + ".json", b"\x00" + p.read_bytes())
    for p in sorted(ROOT.glob("tests/fixtures/**/params.json")):
        put("published", "mistral_" + p.parent.name + ".json", b"\x01" + p.read_bytes())
    # tekken: a cut of tekken_240911.json (v3, the default special tokens) and a v11 with its
    # own special tokens.
    tekken = MISTRAL_DATA / "tekken_240911.json"
    if tekken.exists():
        d = json.loads(tekken.read_text())
        cut = {"config": dict(d["config"], default_vocab_size=1000 + 400, num_vocab_tokens=400),
               "vocab": d["vocab"][:400]}
        put("tekken", "tekken_v3_cut.json", json.dumps(cut))
        put("tokenizer", "tekken_v3_cut.json", json.dumps(cut))
        special = [{"rank": 0, "token_str": "<unk>", "is_control": True},
                   {"rank": 1, "token_str": "<s>", "is_control": True},
                   {"rank": 2, "token_str": "</s>", "is_control": True}]
        v11 = {"config": dict(d["config"], default_vocab_size=3 + 300, default_num_special_tokens=3,
                              num_vocab_tokens=300, version="v11"),
               "vocab": d["vocab"][:300], "special_tokens": special}
        put("tekken", "tekken_v11_cut.json", json.dumps(v11))
    else:
        print(f"make_corpus: {tekken} absent (scripts/setup.sh fetches it): no tekken seeds")
    bytes_vocab = [{"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(), "token_str": None}
                   for i in range(256)]
    put("tekken", "bytes_only.json", json.dumps(
        {"config": {"pattern": ".", "default_vocab_size": 256 + 3, "default_num_special_tokens": 3,
                    "version": "v11"}, "vocab": bytes_vocab,
         "special_tokens": [{"rank": 0, "token_str": "<unk>", "is_control": True},
                            {"rank": 1, "token_str": "<s>", "is_control": True},
                            {"rank": 2, "token_str": "</s>", "is_control": True}]}))
    spm = MISTRAL_DATA / "tokenizer.model.v1"
    if spm.exists():
        put("tokenizer", "tokenizer.model.v1", spm.read_bytes())
    # checkpoint: descriptions of an index (see fuzz/checkpoint_fuzz.cpp); checkpoint_bytes: when
    # given a checkpoint directory, its real index.h5 and shard.
    shard_bytes = b"not really hdf5, but its size and checksum agree"
    shards = json.dumps([{"file": "rank-00000.h5", "bytes": len(shard_bytes), "crc32c": crc32c(shard_bytes)}])
    layout = json.dumps({"world": 1, "tp": 1, "dp": 1, "pp": 1, "etp": 1, "ep": 1, "edp": 1, "zero1": False})
    recipe = (ROOT / "recipes/tiny.yaml").read_text()
    for name, header in [("plain", bytes([0, 2, 3, 4, 0])), ("moments", bytes([4, 1, 5, 0, 0])),
                         ("weights_only", bytes([3, 3, 2, 2, 2])), ("tensors_only", bytes([8, 0, 0, 0, 0])),
                         ("step_array", bytes([16, 1, 2, 0, 0])), ("group_for_tensor", bytes([64, 1, 2, 0, 0]))]:
        put("checkpoint", f"structured_{name}",
            header + b"\x00".join([shards.encode(), layout.encode(), recipe.encode(), shard_bytes]))
    if len(sys.argv) > 1:  # index.h5, then rank-00000.h5 after the mark checkpoint_bytes_fuzz.cpp splits at
        ck = Path(sys.argv[1])
        put("checkpoint_bytes", "index_and_shard.h5", (ck / "index.h5").read_bytes() +
            b"\n--tmt-fuzz rank-00000.h5--\n" + (ck / "rank-00000.h5").read_bytes())
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"make_corpus: {sum(1 for p in CORPUS.rglob('*') if p.is_file())} files, {total} bytes")


if __name__ == "__main__":
    main()
