#!/usr/bin/env python3
"""Fixtures for import, export and eval, made with Hugging Face transformers' own model classes.

    hf_interop.py fixtures --out tests/fixtures/hf
        Writes three small random models and the token shards they are evaluated on:
          mixtral/         MixtralForCausalLM.save_pretrained, bf16, sharded (index + 3 files)
          mistral/         MistralForCausalLM.save_pretrained, fp32, one file, tied embeddings,
                           sliding window 6 (shorter than the 16-token windows)
          mistral-native/  Mistral's own format (params.json + consolidated.safetensors, bf16, RoPE
                           pairs interleaved), converted for the reference by transformers' own
                           convert_mistral_weights_to_hf.py
          data128/{train,val}/shard-00000.bin    tokens < 128 (tramontane's shard format, data/shard.h)
          data32k/{train,val}/shard-00000.bin    tokens < 32000
          expected.json    each model's loss on every validation window, by transformers in float64
    hf_interop.py loss HF_DIR --val SHARD --seq-len S
        Prints {"val_loss", "tokens", "windows"} of AutoModelForCausalLM.from_pretrained(HF_DIR) on
        the windows of a validation shard (used on `tramontane export`'s output by the tests).

The windows are tramontane's validation windows (data/token_dataset.h): window w is tokens
[w*S, w*S + S] of the split, N = (total - 1) // S of them; the loss is the mean cross-entropy over
every predicted token of every window.

Runs with Debian's torch 1.13 and transformers 4.44.2 (scripts/reference/README.md):
    PYTHONPATH=/opt/hf4 /usr/bin/python3 scripts/reference/hf_interop.py fixtures --out tests/fixtures/hf
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch

SEQ_LEN = 16
VAL_WINDOWS = 12


def write_shard(path, tokens, vocab):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tokens = np.asarray(tokens, dtype=np.uint16)
    with open(path, "wb") as f:
        f.write(b"TMTSHARD")
        f.write(struct.pack("<IIQII", 1, 2, len(tokens), vocab, 0))
        f.write(tokens.tobytes())


def read_shard(path):
    with open(path, "rb") as f:
        head = f.read(32)
        assert head[:8] == b"TMTSHARD", path
        _, width, count, _, _ = struct.unpack("<IIQII", head[8:])
        dtype = {2: np.uint16, 4: np.uint32}[width]
        return np.frombuffer(f.read(count * width), dtype=dtype).astype(np.int64)


def window_loss(model, tokens, seq_len):
    """Mean cross-entropy (float64) over the windows of a token split."""
    model = model.double().eval()
    n = (len(tokens) - 1) // seq_len
    total, count, per_window = 0.0, 0, []
    with torch.no_grad():
        for w in range(n):
            window = torch.tensor(tokens[w * seq_len : w * seq_len + seq_len + 1]).unsqueeze(0)
            logits = model(input_ids=window[:, :-1]).logits[0]
            losses = torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="none")
            total += float(losses.sum())
            count += seq_len
            per_window.append(float(losses.mean()))
    return {"val_loss": total / count, "tokens": count, "windows": n, "per_window": per_window}


def randomize(model, gen):
    """Every weight random (norms too, so a swapped norm would show)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen, dtype=torch.float64))


def make_hf(out, cls, config, dtype, gen, **save):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = cls(config)
    randomize(model, gen)
    model = model.to(dtype)
    model.save_pretrained(out, safe_serialization=True, **save)
    # The reference loss is that of the saved model, reloaded as any user would. Loaded in float32
    # (bf16 weights widen exactly): loaded as bf16, transformers 4.44's Mixtral would compute its
    # RoPE frequencies in bf16, and .double() later does not recompute them.
    return AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")


def make_native(out, gen):
    """Mistral's own format, random bf16 weights; the reference is transformers' conversion of it."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    from transformers.models.mistral import convert_mistral_weights_to_hf as convert

    params = {"dim": 16, "n_layers": 2, "head_dim": 8, "hidden_dim": 32, "n_heads": 2, "n_kv_heads": 1,
              "norm_eps": 1e-5, "vocab_size": 32000, "rope_theta": 10000.0}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "params.json"), "w") as f:
        json.dump(params, f, indent=2)
    d, v, f_, dh = params["dim"], params["vocab_size"], params["hidden_dim"], params["head_dim"]
    shapes = {"tok_embeddings.weight": (v, d), "norm.weight": (d,), "output.weight": (v, d)}
    for l in range(params["n_layers"]):
        p = f"layers.{l}."
        shapes.update({p + "attention.wq.weight": (params["n_heads"] * dh, d),
                       p + "attention.wk.weight": (params["n_kv_heads"] * dh, d),
                       p + "attention.wv.weight": (params["n_kv_heads"] * dh, d),
                       p + "attention.wo.weight": (d, params["n_heads"] * dh),
                       p + "attention_norm.weight": (d,), p + "ffn_norm.weight": (d,),
                       p + "feed_forward.w1.weight": (f_, d), p + "feed_forward.w2.weight": (d, f_),
                       p + "feed_forward.w3.weight": (f_, d)})
    tensors = {}
    for name, shape in shapes.items():
        base = 1.0 if "norm" in name else 0.0
        scale = 0.3 if "norm" in name else 0.15
        t = base + scale * torch.randn(shape, generator=gen, dtype=torch.float64)
        tensors[name] = t.to(torch.bfloat16).contiguous()
    save_file(tensors, os.path.join(out, "consolidated.safetensors"), metadata={"format": "pt"})
    with tempfile.TemporaryDirectory() as tmp:
        # transformers' converter reads params.json and consolidated.safetensors (is_v3).
        convert.write_model(tmp, out, "7B", tokenizer_path=None, safe_serialization=True, is_v3=True)
        return AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="eager")


def fixtures(out):
    import transformers
    from transformers import MistralConfig, MistralForCausalLM, MixtralConfig, MixtralForCausalLM

    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    rng = np.random.default_rng(20261203)
    gen = torch.Generator().manual_seed(20261203)
    val_len = SEQ_LEN * VAL_WINDOWS + 1
    data128 = {"train": rng.integers(0, 128, 4096), "val": rng.integers(0, 128, val_len)}
    data32k = {"train": rng.integers(0, 32000, 1024), "val": rng.integers(0, 32000, val_len)}
    for split in ("train", "val"):
        write_shard(os.path.join(out, "data128", split, "shard-00000.bin"), data128[split], 128)
        write_shard(os.path.join(out, "data32k", split, "shard-00000.bin"), data32k[split], 32000)

    expected = {"generator": "scripts/reference/hf_interop.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "seq_len": SEQ_LEN}
    mixtral = MixtralConfig(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                            num_experts_per_tok=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                            rope_theta=10000.0, sliding_window=None, tie_word_embeddings=False,
                            router_aux_loss_coef=0.02)
    model = make_hf(os.path.join(out, "mixtral"), MixtralForCausalLM, mixtral, torch.bfloat16, gen,
                    max_shard_size="40KB")
    expected["mixtral"] = window_loss(model, data128["val"], SEQ_LEN)

    mistral = MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                            rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=6,
                            tie_word_embeddings=True)
    model = make_hf(os.path.join(out, "mistral"), MistralForCausalLM, mistral, torch.float32, gen)
    expected["mistral"] = window_loss(model, data128["val"], SEQ_LEN)

    model = make_native(os.path.join(out, "mistral-native"), gen)
    expected["mistral-native"] = window_loss(model, data32k["val"], SEQ_LEN)

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    for k in ("mixtral", "mistral", "mistral-native"):
        print(f"{k}: val_loss {expected[k]['val_loss']:.9f} over {expected[k]['tokens']} tokens")


def loss(hf_dir, val, seq_len):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager")
    result = window_loss(model, read_shard(val), seq_len)
    del result["per_window"]
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", required=True)
    l = sub.add_parser("loss")
    l.add_argument("hf_dir")
    l.add_argument("--val", required=True)
    l.add_argument("--seq-len", type=int, default=SEQ_LEN)
    a = ap.parse_args()
    if a.command == "fixtures":
        fixtures(a.out)
    else:
        loss(a.hf_dir, a.val, a.seq_len)


if __name__ == "__main__":
    sys.exit(main())
