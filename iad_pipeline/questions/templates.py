"""Reference (template) images: for each query, normal training images of its category.

MMAD shows a model one or more normal images beside the query and ships two lists per query,
``similar_templates`` and ``random_templates``; EMIT retrieves the most similar normal
training image by CLIP ViT-B/32 cosine similarity. :class:`TemplateRetriever` does both for
our own datasets, with one of three backends:

- ``pixels`` (always available, offline): grayscale 32x32 thumbnail (``cv2.INTER_AREA``),
  mean-centred and L2-normalised, beside a 4x4x4-bin colour histogram; the cosine of two
  embeddings is ``0.8 * cos(thumbnails) + 0.2 * cos(histograms)``.
- ``clip``: ``transformers.CLIPModel.get_image_features`` of a local folder or hub id, loaded
  with ``local_files_only=True`` unless told otherwise (weights are never downloaded
  silently); :class:`ClipUnavailableError` when they cannot be loaded.
- ``random``: a seeded random choice (MMAD's ``random_templates``).

``make_retriever("auto")`` tries ``clip`` and falls back to ``pixels`` with a warning.

Candidates for a query are the rows of the pool with ``split == "train"`` and
``is_anomalous`` false, in the same dataset and category as the query (``group_by``), never
the query itself: rows with the query's ``sample_id`` or its ``sha256`` are left out. Every
image is embedded once (one batch over all queries and candidates); similarities are one
matrix product per category; ties go to the smaller path, so results are reproducible. A
category without any normal training image gets empty lists and a warning; a category with
fewer than ``k`` candidates gets all of them.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.questions.phash import map_files, read_image

log = logging.getLogger(__name__)

BACKENDS = ("pixels", "clip", "random")
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
THUMB = 32
HIST_BINS = 4
COLOUR_WEIGHT = 0.2
CLIP_BATCH = 32

# An embedder maps image paths to float32 rows of unit length (zero rows for flat images).
Embedder = Callable[[Sequence[str]], np.ndarray]


class RetrievalError(IadError):
    """Template retrieval was asked for something it cannot do (bad backend, columns, k)."""


class ClipUnavailableError(RetrievalError):
    """The CLIP weights could not be loaded (offline, wrong path, missing files)."""


def pixel_embedding(
    path: str, size: int = THUMB, bins: int = HIST_BINS, colour_weight: float = COLOUR_WEIGHT
) -> np.ndarray:
    """The ``pixels`` embedding of one image: thumbnail and colour histogram, unit length.

    >>> import tempfile, pathlib
    >>> p = str(pathlib.Path(tempfile.mkdtemp()) / "x.png")
    >>> _ = cv2.imwrite(p, np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    >>> e = pixel_embedding(p)
    >>> e.shape, round(float(e @ e), 5)
    ((1088,), 1.0)
    """
    colour = cv2.resize(read_image(path, gray=False), (size, size), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.float32).ravel()
    hist = cv2.calcHist([colour], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    parts = [(gray - gray.mean(), 1.0 - colour_weight), (hist, colour_weight)]
    return np.concatenate([_unit(v) * np.float32(np.sqrt(w)) for v, w in parts])


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 1e-6 else np.zeros_like(v)).astype(np.float32)


@dataclass(frozen=True)
class PixelEmbedder:
    """The offline ``pixels`` backend (a process pool for long lists, see ``map_files``)."""

    size: int = THUMB
    workers: int | None = None
    name: str = "pixels"

    def __call__(self, paths: Sequence[str]) -> np.ndarray:
        fn = functools.partial(pixel_embedding, size=self.size)
        rows = map_files(fn, paths, self.workers)
        width = self.size * self.size + HIST_BINS**3
        return np.stack(rows) if rows else np.zeros((0, width), np.float32)


class ClipEmbedder:
    """The ``clip`` backend: normalised ``CLIPModel.get_image_features`` of RGB images.

    Raises:
        ClipUnavailableError: the model or its image processor cannot be loaded.
    """

    name = "clip"

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        *,
        local_files_only: bool = True,
        device: str = "cpu",
        batch_size: int = CLIP_BATCH,
    ) -> None:
        from transformers import CLIPImageProcessor, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(model, local_files_only=local_files_only)
            self.processor = CLIPImageProcessor.from_pretrained(
                model, local_files_only=local_files_only
            )
        except (OSError, ValueError) as exc:
            where = "locally" if local_files_only else "locally or from the hub"
            msg = (
                f"CLIP weights {model!r} are unavailable: could not load them {where} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); expected a folder with "
                "config.json, the weights and preprocessor_config.json, or a cached hub id. "
                'Pass a local path as clip_model, or use backend "pixels" (offline)'
            )
            raise ClipUnavailableError(msg) from exc
        self.model.eval().to(device)
        self.device = device
        self.batch_size = batch_size

    def __call__(self, paths: Sequence[str]) -> np.ndarray:
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for path in paths[start : start + self.batch_size]:
                bgr = read_image(path, gray=False)
                images.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixels.to(self.device))
            # transformers 5 returns a model output whose pooler_output is the projection.
            feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        dim = self.model.config.projection_dim
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def _stable_int(text: str) -> int:
    """A seed part from a string, equal across runs and machines (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class TemplateRetriever:
    """Retrieve ``k`` normal training images per query; ``embed=None`` means random.

    Args:
        embed: An :data:`Embedder` (``PixelEmbedder()``, ``ClipEmbedder(...)``) or ``None``
            for the seeded ``random`` backend.
        seed: Seed of the random backend (per query: ``seed`` and the query's sample id).
        group_by: Columns a candidate must share with its query.
        path_column: The pool column returned (``image_path``, or ``relpath`` for MMAD-style
            root-relative paths).
    """

    embed: Embedder | None = None
    seed: int = 0
    group_by: tuple[str, ...] = ("dataset", "category")
    path_column: str = "image_path"

    @property
    def backend(self) -> str:
        return "random" if self.embed is None else str(getattr(self.embed, "name", "custom"))

    def retrieve(self, queries: pl.DataFrame, pool: pl.DataFrame, k: int = 3) -> dict:
        """``{query sample_id: [k paths, most similar first]}`` in the order of ``queries``."""
        if k < 0:
            msg = f"k={k}: expected a number of templates >= 0"
            raise RetrievalError(msg)
        need = {"sample_id", "image_path", "sha256", *self.group_by}
        _require(queries, "queries", need)
        _require(pool, "pool", need | {"split", "is_anomalous", self.path_column})
        cands = pool.filter((pl.col("split") == "train") & ~pl.col("is_anomalous")).unique(
            "sample_id", keep="first", maintain_order=True
        )
        groups = {key: frame for key, frame in cands.group_by(self.group_by, maintain_order=True)}
        result: dict[str, list[str]] = {sid: [] for sid in queries["sample_id"]}
        wanted = []
        for key, q in queries.group_by(self.group_by, maintain_order=True):
            if key in groups:
                wanted.append((key, q))
            else:
                shown = "/".join(str(v) for v in key)
                log.warning("%s: no normal training image to use as a template", shown)
        emb = self._embeddings(wanted, groups)
        for key, q in wanted:
            result.update(self._rank(q, groups[key], k, emb))
        return result

    def _embeddings(self, wanted: list, groups: dict) -> dict[str, np.ndarray]:
        if self.embed is None or not wanted:
            return {}
        paths = sorted(
            {p for key, q in wanted for p in (*q["image_path"], *groups[key]["image_path"])}
        )
        return dict(zip(paths, self.embed(paths), strict=True))

    def _rank(
        self, q: pl.DataFrame, c: pl.DataFrame, k: int, emb: dict[str, np.ndarray]
    ) -> dict[str, list[str]]:
        c = c.sort(self.path_column)
        out_paths = np.asarray(c[self.path_column].to_list(), dtype=object)
        c_ids, c_sha = c["sample_id"].to_numpy(), c["sha256"].to_numpy()
        q_ids, q_sha = q["sample_id"].to_numpy(), q["sha256"].to_numpy()
        hashed = np.array([h is not None for h in c_sha], dtype=bool)
        same_sha = (q_sha[:, None] == c_sha[None, :]) & hashed[None, :]
        excluded = (q_ids[:, None] == c_ids[None, :]) | same_sha
        if self.embed is None:
            order = [
                np.random.default_rng([self.seed, _stable_int(sid)]).permutation(c.height)
                for sid in q_ids
            ]
        else:
            qe = np.stack([emb[p] for p in q["image_path"]])
            ce = np.stack([emb[p] for p in c["image_path"]])
            sims = qe @ ce.T
            # lexsort's last key is primary: similarity descending; ties keep path order.
            order = [np.lexsort((np.arange(c.height), -row)) for row in sims]
        return {
            str(sid): [str(p) for p in out_paths[idx[~excluded[i, idx]]][:k]]
            for i, (sid, idx) in enumerate(zip(q_ids, order, strict=True))
        }


def _require(frame: pl.DataFrame, name: str, columns: set[str]) -> None:
    missing = sorted(columns - set(frame.columns))
    if missing:
        msg = (
            f"{name}: missing columns {missing} (found {frame.columns}); expected a samples "
            "table (iad_pipeline.datasets.samples)"
        )
        raise RetrievalError(msg)


def make_retriever(
    backend: str = "auto",
    clip_model: str = DEFAULT_CLIP_MODEL,
    *,
    seed: int = 0,
    workers: int | None = None,
    local_files_only: bool = True,
    device: str = "cpu",
    path_column: str = "image_path",
) -> TemplateRetriever:
    """A retriever for ``backend`` (``auto``, ``pixels``, ``clip`` or ``random``).

    ``auto`` tries ``clip`` and falls back to ``pixels`` with a logged warning.

    >>> make_retriever("pixels").backend
    'pixels'
    >>> make_retriever("sift")
    Traceback (most recent call last):
    ...
    iad_pipeline.questions.templates.RetrievalError: unknown backend 'sift'; valid: auto, ...
    """
    if backend not in ("auto", *BACKENDS):
        msg = f"unknown backend {backend!r}; valid: {', '.join(('auto', *BACKENDS))}"
        raise RetrievalError(msg)
    embed: Embedder | None = None
    if backend in ("auto", "clip"):
        try:
            embed = ClipEmbedder(clip_model, local_files_only=local_files_only, device=device)
        except ClipUnavailableError as exc:
            if backend == "clip":
                raise
            log.warning("%s; falling back to the pixels backend", exc)
    if backend == "pixels" or (backend == "auto" and embed is None):
        embed = PixelEmbedder(workers=workers)
    return TemplateRetriever(embed, seed=seed, path_column=path_column)


def retrieve(
    queries: pl.DataFrame,
    pool: pl.DataFrame,
    *,
    k: int = 3,
    backend: str = "pixels",
    seed: int = 0,
    workers: int | None = None,
    clip_model: str = DEFAULT_CLIP_MODEL,
) -> dict[str, list[str]]:
    """``{query sample_id: k normal train image paths of its dataset and category}``.

    Most similar first (``random``: in random order); never the query itself. See
    :class:`TemplateRetriever`.
    """
    retriever = make_retriever(backend, clip_model, seed=seed, workers=workers)
    return retriever.retrieve(queries, pool, k)


def similar_and_random(
    queries: pl.DataFrame,
    pool: pl.DataFrame,
    k: int = 3,
    seed: int = 0,
    backend: str = "pixels",
    *,
    workers: int | None = None,
    clip_model: str = DEFAULT_CLIP_MODEL,
) -> dict[str, dict[str, list[str]]]:
    """MMAD's two fields per query: ``similar_templates`` and ``random_templates``."""
    similar = retrieve(
        queries, pool, k=k, backend=backend, seed=seed, workers=workers, clip_model=clip_model
    )
    rand = retrieve(queries, pool, k=k, backend="random", seed=seed)
    return {
        sid: {"similar_templates": paths, "random_templates": rand[sid]}
        for sid, paths in similar.items()
    }
