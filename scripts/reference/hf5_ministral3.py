#!/usr/bin/env python3
"""Ministral 3 fixtures made with transformers 5's own Ministral3ForCausalLM (an independent
implementation of YaRN, its attention factor and Llama 4's query scaling).

    hf5_ministral3.py --out tests/fixtures/hf5/ministral3
        Writes two small random models, saved with save_pretrained (fp32 safetensors):
          untied/   YaRN factor 4 from an original length of 4 (the ramp turns between pairs 0 and
                    the slow end), mscale 1 / mscale_all_dim 0.5 (attention factor != 1), Llama 4
                    beta 0.1 (the query scale steps at positions 4, 8, 12 of a 16-token sequence),
                    GQA 4 heads / 2 kv heads, head_dim 16 != hidden / heads
          tied/     tied embeddings, one kv head, truncate false, mscale without mscale_all_dim
                    (transformers ignores it: the factor is 0.1 ln s + 1), beta 0.2 from 5
        and for each, reference.safetensors: `tokens`, `targets` (I32 [2, 16]), `loss` (F64 [1], the
        mean cross-entropy over every target, computed in float64), `logits` (F32 [2, 16, V]) and
        `grad.<transformers name>` (F32) for every weight, the gradient of that loss in float64;
        data/{train,val}/shard-00000.bin (tramontane's shard format, tokens < 128) and expected.json:
        each model's loss on every 16-token validation window (float64), as hf_interop.py computes it.

Run with transformers 5 on torch 2 (scripts/reference/README.md):
    source /opt/hf5/env.sh; python3 scripts/reference/hf5_ministral3.py --out tests/fixtures/hf5/ministral3
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_interop import SEQ_LEN, VAL_WINDOWS, randomize, window_loss, write_shard  # noqa: E402

VOCAB = 128
BATCH = 2


def config(tied):
    from transformers import Ministral3Config

    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
            "original_max_position_embeddings": 4, "beta_fast": 0.5, "beta_slow": 0.02,
            "mscale": 1.0, "mscale_all_dim": 0.5, "llama_4_scaling_beta": 0.1,
            "max_position_embeddings": 64}
    if tied:
        rope.update({"rope_theta": 500.0, "original_max_position_embeddings": 5, "truncate": False,
                     "llama_4_scaling_beta": 0.2, "beta_fast": 1.0, "beta_slow": 0.05})
        del rope["mscale_all_dim"]
    return Ministral3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=1 if tied else 2, head_dim=16,
                            max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=tied,
                            sliding_window=None, rope_parameters=rope)


def save_safetensors(path, tensors):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})


def make(out, tied, gen, tokens, targets, val):
    from transformers import AutoModelForCausalLM, Ministral3ForCausalLM

    torch.manual_seed(0)
    model = Ministral3ForCausalLM(config(tied))
    randomize(model, gen)
    model = model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    # The reference is the saved model, reloaded as any user would, computed in float64.
    model = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").double().eval()
    rot = model.model.rotary_emb
    print(f"{os.path.basename(out)}: attention factor {rot.attention_scaling:.6f}, inv_freq "
          f"{[round(float(f), 6) for f in rot.inv_freq]}")
    model.zero_grad()
    logits = model(input_ids=tokens).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1).long())
    loss.backward()
    ref = {"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32),
           "loss": loss.detach().reshape(1), "logits": logits.detach().to(torch.float32)}
    names = set()
    for name, p in model.named_parameters():
        ref["grad." + name] = p.grad.detach().to(torch.float32)
        names.add(name)
    save_safetensors(os.path.join(out, "reference.safetensors"), ref)
    print(f"  loss {float(loss):.9f}, {len(names)} gradients")
    return window_loss(model, val, SEQ_LEN)


def main():
    import transformers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    rng = np.random.default_rng(20261215)
    gen = torch.Generator().manual_seed(20261215)
    data = {"train": rng.integers(0, VOCAB, 1024), "val": rng.integers(0, VOCAB, SEQ_LEN * VAL_WINDOWS + 1)}
    for split in ("train", "val"):
        write_shard(os.path.join(a.out, "data", split, "shard-00000.bin"), data[split], VOCAB)
    seqs = torch.tensor(rng.integers(0, VOCAB, (BATCH, SEQ_LEN + 1)))
    tokens, targets = seqs[:, :-1], seqs[:, 1:]
    expected = {"generator": "scripts/reference/hf5_ministral3.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "seq_len": SEQ_LEN}
    for name, tied in (("untied", False), ("tied", True)):
        e = make(os.path.join(a.out, name), tied, gen, tokens, targets, data["val"])
        expected[name] = e
        print(f"  val_loss {e['val_loss']:.9f} over {e['tokens']} tokens")
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
