#!/usr/bin/env python3
"""Golden token ids for tramontane's tokenizers, from mistral_common (the independent implementation).

Writes, into OUT_DIR (default tests/fixtures/tokenizer):
  corpus.jsonl    a multilingual corpus, one JSON object {"id": n, "text": "..."} a line, generated
                  here from a seeded random generator (reproducible: same script, same bytes). One
                  line in the middle is empty (`tramontane prepare --format jsonl` skips empty lines).
  <tokenizer>.ids one line per document (the non-empty corpus lines, in order): the JSON list of ids
                  from mistral_common's `encode(text, bos=True, eos=True)` for that tokenizer file.

The tokenizer files come from the mistral-common 1.13.1 wheel's `mistral_common/data/` (DATA_DIR;
scripts/setup.sh unpacks it into ~/.cache/tramontane/mistral-common-1.13.1/mistral_common/data).
Needs mistral-common==1.13.1, tiktoken and sentencepiece importable (see scripts/reference/README.md).

    python3 scripts/reference/tokenizer_reference.py DATA_DIR [OUT_DIR]
"""
import json
import random
import sys
from pathlib import Path

from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

TOKENIZERS = ["tekken_240911.json", "tokenizer.model.v1", "mistral_instruct_tokenizer_240323.model.v3"]

# Fragments per kind, written for this corpus. Documents are random mixtures of them.
ENGLISH = [
    "The quick experiment finished before lunch.", "Routers send each token to two experts.",
    "It's what we'd expected, isn't it?", "Don't panic: the loss went DOWN.", "HTTPServer",
    "camelCaseIdentifier", "snake_case_name", "e.g. 3.14159 or 2,718.28", "U.S.A.", "Mr. O'Neil's",
    "ALL CAPS SHOUTING", "a", "I", "(parenthesised) [bracketed] {braced}", "email@example.org",
    "https://example.com/path?query=1&x=y#frag", "--flag=value", "~/.cache/tramontane",
]
CODE = [
    "def f(x):\n\treturn x * 2\n", "int main() {\n    return 0;\n}\n",
    "if (a &&\n        b) {\n  \t  c();\n}\n", "for i in range(10):\n   \tprint(i)  \n",
    "x = [1, 2, 3]  # trailing comment   \n", "#include <vector>\n\n\n", "    \t\t    indented\n",
    "std::vector<uint32_t> ids;", "a<<=2; b>>>=3; c!==d", "SELECT * FROM t WHERE id=42;",
    "{\"json\": [true, null, 1e-9]}", "</div><div class=\"x\">", "\\n \\t \\\\",
]
EMOJI = [
    "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
    "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F9D1\U0001F3FF\u200D\U0001F4BB", "\u2764\uFE0F",
    "\U0001F1EB\U0001F1F7", "\U0001F44B\U0001F3FB\U0001F44B\U0001F3FC\U0001F44B\U0001F3FE",
    "\U0001F680\U0001F680\U0001F680", "\u263A", "\U0001FAE0",
]
CJK = [
    "\u6211\u4eec\u8bad\u7ec3\u4e86\u4e00\u4e2a\u6a21\u578b\u3002", "\u4e13\u5bb6\u6df7\u5408",
    "\u3053\u308c\u306f\u30c6\u30b9\u30c8\u3067\u3059\u3002", "\u30ab\u30bf\u30ab\u30ca\u30fc",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.", "\u6f22\u5b57\u3068\u304b\u306a\u6df7\u3058\u308a",
    "\uff08\u5168\u89d2\uff09\uff11\uff12\uff13", "\u4e2d\u6587\uff0c\u6807\u70b9\uff1b\u7b26\u53f7\uff01",
]
RTL = [
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0627\u0644\u0646\u0645\u0648\u0630\u062c \u064a\u062a\u0639\u0644\u0645\u064f",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u05d1\u05b0\u05bc\u05e8\u05b5\u05d0\u05e9\u05b4\u05c1\u05d9\u05ea",
    "\u0661\u0662\u0663 \u0664\u0665", "\u200f\u05d0\u05d1\u05d2\u200e abc",
]
INDIC_THAI = [
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092e\u0947\u0902 \u0967\u0968\u0969",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e0a\u0e48\u0e2d\u0e07\u0e27\u0e48\u0e32\u0e07",
    "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd", "\u0995\u09be\u099c",
]
ACCENTS = [
    "caf\u00e9 cafe\u0301", "na\u0131\u0308ve", "Z\u0335\u0321a\u0336l\u0337g\u0338o\u0334",
    "\u00c5ngstr\u00f6m A\u030angstro\u0308m", "\u0301\u0302 leading marks", "stra\u00dfe STRASSE",
    "\u1e9e\u00df", "\u01c5ungla \u01c8j", "\u0130stanbul \u0131i", "\u03a9mega \u03c9\u03c2\u03c3",
    "\u0416\u0443\u0440\u043d\u0430\u043b \u044d\u043a\u0441\u043f\u0435\u0440\u0442\u043e\u0432",
]
SPACES = [
    "\r\n", "\n", "\n\n\n", "\r", "\u00a0", "\u3000", "  ", "     ", "\t", " \t \n", "\u2028",
    "\u2029", "\u0085", "\u180e", "\u200b", "\u2009thin\u2009space", "\u202f", "\ufeff", " \r\n \r\n",
    "\x0b\x0c", "\x1c\x1d\x1e\x1f",
]
DIGITS = ["0", "12", "123456789012345678901234567890", "3.0e-7", "1,000,000", "\u00bd \u2153 \u00b2",
          "\u2167 \u216b", "0x1F", "2024-09-11", "99%"]
SPECIAL_LOOKING = ["<s>", "</s>", "[INST]", "[/INST]", "<unk>", "<pad>", "[TOOL_CALLS]", "<SPECIAL_20>",
                   "<s><s></s>", "[INST] hi [/INST]", "\u2581", "<0x41>"]

KINDS = [ENGLISH, CODE, EMOJI, CJK, RTL, INDIC_THAI, ACCENTS, SPACES, DIGITS, SPECIAL_LOOKING]


def make_documents(rng: random.Random) -> list[str]:
    docs = ["", " ", "\n", "  trailing spaces   ", "<s>", "[INST]", "\r\n\r\n", "\u00a0\u00a0x\u3000"]
    for kind in KINDS:  # every fragment alone
        docs.extend(kind)
    for _ in range(300):  # random mixtures
        n = rng.randint(1, 24)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(rng.choice(KINDS)))
            parts.append(rng.choice([" ", "", "", "\n", "  ", ", ", ". "]))
        docs.append("".join(parts))
    # A few long pieces: long runs of one kind of character (the BPE's long-piece path).
    docs.append(" " * 3000 + "x")
    docs.append("=" * 2500)
    docs.append("\U0001F600" * 400)
    docs.append("9" * 1200)
    docs.append("\n" * 700 + "end")
    docs.append("ab" * 1500)
    docs.append("".join(rng.choice(KINDS[rng.randrange(len(KINDS))]) for _ in range(400)))
    return docs


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    data = Path(sys.argv[1])
    out = Path(sys.argv[2] if len(sys.argv) == 3 else "tests/fixtures/tokenizer")
    out.mkdir(parents=True, exist_ok=True)
    docs = make_documents(random.Random(13))
    lines = [json.dumps({"id": i, "text": d}, ensure_ascii=False) for i, d in enumerate(docs)]
    lines.insert(len(lines) // 2, "")  # the empty line, skipped by prepare
    (out / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in TOKENIZERS:
        path = data / name
        tok = Tekkenizer.from_file(path) if name.endswith(".json") else SentencePieceTokenizer(path)
        with open(out / f"{name}.ids", "w", encoding="ascii") as f:
            for d in docs:
                f.write(json.dumps(tok.encode(d, bos=True, eos=True), separators=(",", ":")) + "\n")
        print(f"{name}: {len(docs)} documents, vocab {tok.n_words}, bos {tok.bos_id}, eos {tok.eos_id}")


if __name__ == "__main__":
    main()
