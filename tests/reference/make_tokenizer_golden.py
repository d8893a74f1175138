#!/usr/bin/env python3
"""Golden tokenizations for tests/test_tokenizer.cpp, made by the `tokenizers` package.

Trains a small byte-level BPE tokenizer laid out like GPT-NeoX's (the one xLSTM 7B ships): NFC
normalizer, ByteLevel pre-tokenizer without a prefix space, ByteLevel decoder, special tokens
<|endoftext|> and <|padding|> first, and added tokens as GPT-NeoX has them (runs of spaces,
normalized, not special), plus two that exercise the options (lstrip/rstrip, and a normalized
token whose text is not in NFC). The training text is GPL-3 and Apache-2.0 from
/usr/share/common-licenses (Debian's base-files) and the test corpus itself, so that non-Latin
scripts get merges too. Then it encodes the corpus and writes, in data/:

  tokenizer.json          the tokenizer (24 KB)
  tokenizer_golden.json   {"corpus": [{"text", "ids", "ids_prefix_space", "ids_no_regex"}],
                           "decodes": [{"ids", "skip_special_tokens", "text"}],
                           "nfc": [[text, NFC of text by Python's unicodedata]]}

The ids_* fields are the ids of the same tokenizer with one option changed (VARIANTS).
"decodes" are the reference's decodings of
prefixes of the corpus' ids (they cut characters in the middle of their bytes) and of whole
encodings with and without special tokens. "nfc" checks the normalization on its own, on cases
that reach each rule: reordering, Hangul, singletons, composition exclusions, blocked marks.

Run with a python that has `tokenizers` (0.23.3 made the committed files):

    /tmp/torch-peer/bin/python tests/reference/make_tokenizer_golden.py
"""
import json
import pathlib
import unicodedata

import tokenizers
from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)

DATA = pathlib.Path(__file__).resolve().parent / "data"
LICENSES = [pathlib.Path("/usr/share/common-licenses") / name for name in ("GPL-3", "Apache-2.0")]
VOCAB_SIZE = 1000
SPECIAL = ["<|endoftext|>", "<|padding|>"]

CORPUS = [
    "",
    "Hello world",
    "Hello, world! How's it going? I'm fine, they've said they'll do it; we'd see.",
    "IT'S LOUD'S 'quoted' ''double'' don't",
    "The GNU General Public License is a free, copyleft license for software.",
    "  leading spaces and trailing spaces   ",
    "tabs\tand\t\ttabs\t",
    "line one\nline two\n\nline four\r\nwindows line\n",
    "mixed \t \n white\u00a0space\u3000ideographic\u2028line separator\u0085next line",
    "\x1cfile separator is not white space\x1f",
    "digits 0 12 345 6789 3.14159 1,000,000 2026-11-29 10:35",
    "Unicode digits: \u0663\u0664\u0665 \u2167 \u00bd \u2460\u2461 \U0001d7d8",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "decomposed: cafe\u0301 nai\u0308ve A\u030a \u1e9b\u0323 q\u0307\u0323",
    "combining marks alone: \u0301\u0308 and a\u0308\u0301\u0323 and \u05d0\u05b8",
    "Hangul: \u1100\u1161\u11a8 \ud55c\uad6d\uc5b4 \u1112\u1161\u11ab",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca",
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440! "
    "\u03b1\u03b2\u03b3 \u0394\u03b5\u03bb\u03c4\u03b1",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 "
    "\u05e9\u05dc\u05d5\u05dd \u0939\u093f\u0928\u094d\u0926\u0940",
    "emoji: \U0001f600\U0001f680 \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 "
    "\u2764\ufe0f \U0001f1e9\U0001f1ea",
    "symbols: ~!@#$%^&*()_+-=[]{}|;:'\",.<>/?`\\ \u00a9\u00ae\u2122 \u20ac\u00a3\u00a5",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "two <|endoftext|><|endoftext|> in a row <|padding|>",
    "<|endoftext|> at the start and at the end <|endoftext|>",
    "almost <|endoftext| special <|endoftext",
    "runs:  two,    four,        eight,         nine,                 seventeen",
    "mask <mask> here, <mask>there,\t<mask>\t and  <mask>  ",
    "Caf\u00e9 and Cafe\u0301 match the normalized added token",
    "a\u0301\u0301\u0301 x",
    "code: def f(x):\n    return x ** 2  # square\n\tif x != 0: pass\n",
    "URLs https://example.org/path?a=1&b=2 and e-mail someone@example.com",
    "this License'll apply; it's THE license's terms you've accepted",
    "x" * 300,
    "0123456789" * 20,
    "\u4e00\u4e01\u4e02\u4e03" * 40,
    "  \n \t\n  ",
    " ",
    "\n",
    "a b  c   d    e     f",
    "Version 3, 29 June 2007 Copyright (C) 2007 Free Software Foundation, Inc.",
]

NFC_CASES = [
    "plain ASCII",
    "e\u0301 a\u0308 o\u0302\u0301 A\u030a\u0301",    # compose, twice
    "q\u0307\u0323 q\u0323\u0307 s\u0323\u0307",       # reorder marks, then compose
    "\u1e0b\u0323 \u1e9b\u0323 \u0958 \u2126 \u212b",  # recompose; exclusion; singletons
    "\u0344 \u0f73 \u0f75 \u0340\u0341",               # non-starter decompositions
    "a\u0301\u0301 a\u05b0\u0301 a\u0315\u0300\u05ae\u0300b",  # blocked marks
    "\u1100\u1161 \u1100\u1161\u11a8 \uac00\u11a8 \ud55c\u1100 \u11a8\u1161",  # Hangul
    "\u0b47\u0b3e \u0b47\u0b57 \u09c7\u09be \u1025\u102e",  # two starters that compose
    "\u0301 leading mark \u00e9\u0301 \u1e69 \u0073\u0323\u0307",
    "\U0001d15e \U000110ab \U00011099\U000110ba \uf900 \U0002f800",  # outside the BMP
    "\u4f60\u597d \U0001f600 \u00c5\u212b\u0041\u030a",
]

def build_tokenizer():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [path.read_text() for path in LICENSES] + CORPUS * 3
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([tokenizers.AddedToken(" " * n, normalized=True) for n in (2, 4, 8)])
    tokenizer.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, rstrip=True)])
    tokenizer.add_tokens([tokenizers.AddedToken("Cafe\u0301", normalized=True)])
    return tokenizer


# Variants of the tokenizer, each one option changed (the C++ test makes them the same way), and
# the corpus field that holds their ids.
VARIANTS = {
    "ids_prefix_space": ("pre_tokenizer", "add_prefix_space", True),
    "ids_no_regex": ("pre_tokenizer", "use_regex", False),
}


def variant(tokenizer_json, section, key, value):
    changed = json.loads(tokenizer_json)
    changed[section][key] = value
    return Tokenizer.from_str(json.dumps(changed))


def main():
    tokenizer = build_tokenizer()
    tokenizer_json = tokenizer.to_str()
    variants = {field: variant(tokenizer_json, *change) for field, change in VARIANTS.items()}

    corpus, decodes = [], []
    for text in CORPUS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == tokenizer.encode(text).ids  # the post-processor adds nothing
        case = {"text": text, "ids": ids}
        for field, tokenizer_variant in variants.items():
            case[field] = tokenizer_variant.encode(text, add_special_tokens=False).ids
        corpus.append(case)
        for cut in sorted({1, len(ids) // 3, len(ids) // 2, len(ids) - 1}):
            if 0 < cut < len(ids):
                decodes.append({"ids": ids[:cut], "skip_special_tokens": False,
                                "text": tokenizer.decode(ids[:cut], skip_special_tokens=False)})
        for skip in (False, True):
            decodes.append({"ids": ids, "skip_special_tokens": skip,
                            "text": tokenizer.decode(ids, skip_special_tokens=skip)})

    DATA.mkdir(exist_ok=True)
    (DATA / "tokenizer.json").write_text(tokenizer_json + "\n")
    nfc = [[text, unicodedata.normalize("NFC", text)] for text in NFC_CASES]
    golden = {"tokenizers_version": tokenizers.__version__, "unicode_version":
              unicodedata.unidata_version, "corpus": corpus, "decodes": decodes, "nfc": nfc}
    (DATA / "tokenizer_golden.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    round_trips = sum(tokenizer.decode(case["ids"]) == case["text"] for case in corpus)
    print(f"tokenizers {tokenizers.__version__}: vocab {tokenizer.get_vocab_size()}, "
          f"{len(corpus)} strings, {sum(len(c['ids']) for c in corpus)} ids, "
          f"{len(decodes)} decodes, {round_trips} of {len(corpus)} decode to their text; "
          f"tokenizer.json {len(tokenizer_json) + 1} bytes")


if __name__ == "__main__":
    main()
