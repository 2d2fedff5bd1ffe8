#!/usr/bin/env bash
# Tokenizing speed: `tramontane prepare --format jsonl` against mistral_common 1.13.1 on the same
# documents, for tekken_240911.json (mistral_common's Tekkenizer.encode, and tiktoken's own
# encode_ordinary_batch underneath it) and the SentencePiece mistral_instruct_tokenizer_240323.model.v3,
# with 1 and THREADS threads. The corpus is tests/fixtures/tokenizer/corpus.jsonl repeated to about MB
# megabytes, in /tmp. Builds nothing: run scripts/setup.sh first.
#   scripts/bench/tokenize.sh [MB] [THREADS]          (default 64 MB, every core)
# Environment: TMT_BUILD_DIR (default build); TMT_MISTRAL_DATA_DIR (default the setup.sh cache);
#   PYTHON (default python3) with mistral-common==1.13.1, tiktoken and sentencepiece importable
#   (e.g. PYTHONPATH=/opt/mc after `pip install --target /opt/mc mistral-common==1.13.1 tiktoken
#   sentencepiece`).
# MB/s counts the documents' text bytes (UTF-8). tramontane's time is the whole prepare run (reading
# and parsing the JSONL, writing the shards) less the same run on a one-document input (the start-up:
# loading the tokenizer); Python's is encode alone (the documents already in memory, the tokenizer
# loaded; with THREADS, a fork pool of THREADS processes for mistral_common and tiktoken's own threads
# for encode_ordinary_batch). ratio = MB/s over mistral_common's at the same thread count.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${TMT_BUILD_DIR:-build}/tramontane
data=${TMT_MISTRAL_DATA_DIR:-${TMT_DEPS_DIR:-$HOME/.cache/tramontane}/mistral-common-1.13.1/mistral_common/data}
mb=${1:-64}
threads=${2:-$(nproc)}
[ -x "$bin" ] || { echo "tokenize.sh: no $bin (run scripts/setup.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/tmt-tokenize-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT

"${PYTHON:-python3}" - "$bin" "$data" "$dir" "$mb" "$threads" <<'PY'
import json, multiprocessing, subprocess, sys, time
from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

binary, data, work, mb, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lines = [l for l in open("tests/fixtures/tokenizer/corpus.jsonl", encoding="utf-8") if l.strip()]
corpus, size, docs = f"{work}/corpus.jsonl", 0, []
with open(corpus, "w", encoding="utf-8") as f:
    while size < mb * 1e6:
        for l in lines:
            f.write(l)
            docs.append(json.loads(l)["text"])
            size += len(docs[-1].encode("utf-8"))
with open(f"{work}/one.jsonl", "w", encoding="utf-8") as f:
    f.write(lines[8])
rows = []

def prepare(tokenizer, n):
    def run(inp):
        t = time.perf_counter()
        out = subprocess.run([binary, "prepare", inp, "--format", "jsonl", "--tokenizer", tokenizer,
                              "--threads", str(n), "--val-fraction", "0.01", "--out", f"{work}/out"],
                             check=True, capture_output=True, text=True).stdout
        words = out.split()
        return time.perf_counter() - t, int(words[1]) + int(words[4])
    start, _ = run(f"{work}/one.jsonl")
    s, tokens = run(corpus)
    return s - start, tokens

tok = None
def encode_doc(d):
    return len(tok.encode(d, bos=True, eos=True))

def python_rate(n):
    t = time.perf_counter()
    if n == 1:
        tokens = sum(encode_doc(d) for d in docs)
    else:
        with multiprocessing.get_context("fork").Pool(n) as pool:
            tokens = sum(pool.imap(encode_doc, docs, chunksize=256))
    return time.perf_counter() - t, tokens

for name in ["tekken_240911.json", "mistral_instruct_tokenizer_240323.model.v3"]:
    path = f"{data}/{name}"
    tok = Tekkenizer.from_file(path) if name.endswith(".json") else SentencePieceTokenizer(path)
    for n in sorted({1, threads}):
        base = python_rate(n)
        rows.append((name, "mistral_common encode", n, *base, base))
        if name.endswith(".json"):
            t = time.perf_counter()
            ids = tok._model.encode_ordinary_batch(docs, num_threads=n)
            s = time.perf_counter() - t
            rows.append((name, "tiktoken encode_ordinary_batch", n, s,
                         sum(len(i) + 2 for i in ids), base))
        rows.append((name, "tramontane prepare", n, *prepare(path, n), base))

print(f"corpus: {len(docs)} documents, {size / 1e6:.1f} MB of text; machine: "
      f"{multiprocessing.cpu_count()} cores")
print(f"| tokenizer | implementation | threads | MB/s | M tokens/s | ratio |")
print(f"|---|---|---:|---:|---:|---:|")
for name, impl, n, s, tokens, base in rows:
    ratio = base[0] / s
    print(f"| {name} | {impl} | {n} | {size / 1e6 / s:.1f} | {tokens / 1e6 / s:.2f} | {ratio:.2f} |")
PY
