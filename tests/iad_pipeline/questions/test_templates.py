"""Template retrieval: same category, normal train images only, never the query itself."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.questions.templates import (
    ClipUnavailableError,
    PixelEmbedder,
    RetrievalError,
    TemplateRetriever,
    make_retriever,
    pixel_embedding,
    retrieve,
    similar_and_random,
)
from iad_pipeline.synthetic import synthesize

K = 3


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    root = tmp_path_factory.mktemp("templates") / "mvtec_ad"
    synthesize("mvtec_ad", root, per_class=2, size=64, categories=["bottle", "grid"])
    spec = get_spec("mvtec_ad")
    return build_samples(spec.scan(root)).samples


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised CLIP of a few thousand weights, saved like a hub checkpoint."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={**small, "num_attention_heads": 2, "vocab_size": 64},
        vision_config={**small, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(config).save_pretrained(path)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(path)
    return path


def queries_of(samples: pl.DataFrame) -> pl.DataFrame:
    return samples.filter(pl.col("split") == "test")


def cosine(a: str, b: str) -> float:
    return float(pixel_embedding(a) @ pixel_embedding(b))


def test_pixels_returns_the_most_similar_normal_train_images(samples: pl.DataFrame):
    queries = queries_of(samples)
    result = retrieve(queries, samples, k=K)
    assert list(result) == queries["sample_id"].to_list()
    by_path = {r["image_path"]: r for r in samples.iter_rows(named=True)}
    for query in queries.iter_rows(named=True):
        paths = result[query["sample_id"]]
        assert len(paths) == K
        for p in paths:
            row = by_path[p]
            assert (row["split"], row["is_anomalous"], row["category"]) == (
                "train",
                False,
                query["category"],
            )
        normals = samples.filter(
            (pl.col("category") == query["category"]) & (pl.col("split") == "train")
        )["image_path"]
        sims = sorted((-cosine(query["image_path"], p), p) for p in normals)
        assert paths == [p for _, p in sims[:K]]  # most similar first, ties by path


def test_never_the_query_itself(samples: pl.DataFrame, tmp_path: Path):
    train_goods = samples.filter((pl.col("split") == "train") & (pl.col("category") == "bottle"))
    result = retrieve(train_goods, samples, k=100)
    n = train_goods.height
    for row in train_goods.iter_rows(named=True):
        assert row["image_path"] not in result[row["sample_id"]]
        assert len(result[row["sample_id"]]) == n - 1  # every other normal image, k capped
    # a byte-identical copy (same sha256) is the query too; a re-encoded copy is not
    query = train_goods.row(0, named=True)
    same = tmp_path / "same.png"
    shutil.copy(query["image_path"], same)
    recoded = tmp_path / "recoded.png"
    cv2.imwrite(str(recoded), cv2.imread(query["image_path"]), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    extra = pl.DataFrame(
        [
            {**query, "sample_id": query["sample_id"] + "_same", "image_path": str(same)},
            {
                **query,
                "sample_id": query["sample_id"] + "_recoded",
                "image_path": str(recoded),
                "sha256": "another-hash",
            },
        ],
        schema=samples.schema,
    )
    got = retrieve(train_goods.head(1), pl.concat([samples, extra]), k=K)[query["sample_id"]]
    assert got[0] == str(recoded) and str(same) not in got


@pytest.mark.parametrize(
    ("k", "expected_len"),
    [(0, 0), (1, 1), (3, 3), (4, 4), (5, 4), (50, 4)],  # bottle has 4 train/good images
)
def test_k_is_capped_by_the_candidates(samples: pl.DataFrame, k: int, expected_len: int):
    query = queries_of(samples).filter(pl.col("category") == "bottle").head(1)
    assert len(retrieve(query, samples, k=k)[query["sample_id"][0]]) == expected_len


def test_category_without_normal_train_images(samples: pl.DataFrame, caplog):
    pool = samples.filter(~((pl.col("category") == "grid") & (pl.col("split") == "train")))
    with caplog.at_level(logging.WARNING, logger="iad_pipeline.questions.templates"):
        result = retrieve(queries_of(samples), pool, k=K)
    grid = queries_of(samples).filter(pl.col("category") == "grid")["sample_id"]
    assert all(result[sid] == [] for sid in grid)
    assert "mvtec_ad/grid: no normal training image" in caplog.text
    assert all(len(result[sid]) == K for sid in result if "/bottle/" in sid)


def test_each_image_is_embedded_once(samples: pl.DataFrame):
    calls: list[list[str]] = []

    def embed(paths):
        calls.append(list(paths))
        return PixelEmbedder(workers=1)(paths)

    queries = queries_of(samples)
    TemplateRetriever(embed).retrieve(queries, samples, K)
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))
    expected = set(queries["image_path"]) | set(
        samples.filter(pl.col("split") == "train")["image_path"]
    )
    assert set(calls[0]) == expected


def test_random_is_seeded_and_independent_of_row_order(samples: pl.DataFrame):
    queries = queries_of(samples)
    first = retrieve(queries, samples, k=K, backend="random", seed=5)
    again = retrieve(queries.reverse(), samples.reverse(), k=K, backend="random", seed=5)
    assert first == again
    assert first != retrieve(queries, samples, k=K, backend="random", seed=6)
    assert all(len(v) == K and len(set(v)) == K for v in first.values())


def test_similar_and_random_has_mmads_two_fields(samples: pl.DataFrame):
    queries = queries_of(samples).head(3)
    both = similar_and_random(queries, samples, k=2, seed=1)
    assert list(both) == queries["sample_id"].to_list()
    similar = retrieve(queries, samples, k=2)
    rand = retrieve(queries, samples, k=2, backend="random", seed=1)
    for sid, fields in both.items():
        assert fields == {"similar_templates": similar[sid], "random_templates": rand[sid]}


def test_relative_paths_can_be_returned(samples: pl.DataFrame):
    query = queries_of(samples).head(1)
    got = make_retriever("pixels", path_column="relpath").retrieve(query, samples, 1)
    assert got[query["sample_id"][0]][0].startswith("bottle/train/good/")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.drop("sha256"), r"queries: missing columns \['sha256'\]"),
        (lambda s: s.drop("category"), r"missing columns \['category'\]"),
    ],
)
def test_missing_columns_are_errors(samples: pl.DataFrame, change, match):
    with pytest.raises(RetrievalError, match=match):
        retrieve(change(samples), samples)


def test_bad_k_and_backend_are_errors(samples: pl.DataFrame):
    with pytest.raises(RetrievalError, match="k=-1"):
        retrieve(samples, samples, k=-1)
    with pytest.raises(RetrievalError, match="unknown backend 'sift'; valid: auto, pixels"):
        retrieve(samples, samples, backend="sift")


def test_pixel_embedding_weights_structure_and_colour(tmp_path: Path):
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    paths = {}
    for name, image in {
        "ramp": ramp,
        "flipped": ramp[:, ::-1],
        "red": np.dstack([np.zeros_like(ramp), np.zeros_like(ramp), ramp]),
    }.items():
        paths[name] = str(tmp_path / f"{name}.png")
        cv2.imwrite(paths[name], image)
    e = {name: pixel_embedding(p) for name, p in paths.items()}
    assert np.isclose(e["ramp"] @ e["ramp"], 1.0)
    # flipped: thumbnails anti-correlated (-1 * 0.8), same histogram (+1 * 0.2)
    assert np.isclose(e["ramp"] @ e["flipped"], -0.8 + 0.2, atol=1e-3)
    # red: the grey ramp is darker but has the same shape (+0.8); histograms differ
    assert 0.79 < e["ramp"] @ e["red"] < 1.0


@pytest.mark.slow
def test_clip_backend_with_a_tiny_local_model(samples: pl.DataFrame, tiny_clip: Path, tmp_path):
    retriever = make_retriever("clip", clip_model=str(tiny_clip))
    assert retriever.backend == "clip"
    query = samples.filter(pl.col("split") == "train").row(0, named=True)
    recoded = tmp_path / "recoded.png"
    cv2.imwrite(str(recoded), cv2.imread(query["image_path"]), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    extra = pl.DataFrame(
        [{**query, "sample_id": "copy", "image_path": str(recoded), "sha256": "x"}],
        schema=samples.schema,
    )
    pool = pl.concat([samples, extra])
    result = retriever.retrieve(pl.DataFrame([query], schema=samples.schema), pool, K)
    assert result[query["sample_id"]][0] == str(recoded)  # identical pixels: cosine 1
    queries = queries_of(samples)
    result = retrieve(queries, samples, k=K, backend="clip", clip_model=str(tiny_clip))
    assert all(len(v) == K for v in result.values())


@pytest.mark.slow
def test_missing_clip_weights(samples: pl.DataFrame, tmp_path: Path, caplog):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ClipUnavailableError, match=r'unavailable.*use backend "pixels"'):
        make_retriever("clip", clip_model=missing)
    with caplog.at_level(logging.WARNING, logger="iad_pipeline.questions.templates"):
        retriever = make_retriever("auto", clip_model=missing)
    assert retriever.backend == "pixels"
    assert "falling back to the pixels backend" in caplog.text
