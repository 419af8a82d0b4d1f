"""A mini MMAD in the extracted ``ALL_DATA`` layout, with ``mmad.json`` and domain knowledge.

Per query category (``per_class`` good and ``per_class`` per defect, all split ``test``):

- DS-MVTec: ``DS-MVTec/<cat>/image/<label>/000.png``, ``mask/<defect>/000_mask.png`` (0/255),
  ``rbg_mask/<defect>/000_rbg_mask.png`` (regions in colour); templates
  ``MVTec-AD/<cat>/train/good/000.png``.
- MVTec-LOCO: the LOCO tree without validation (``train/good``, ``test``, mask folders).
- VisA: the 1cls tree, ``train/good/0000.JPG``, ``test/{good,bad}``, ``ground_truth/bad/000.png``.
- GoodsAD: the GoodsAD tree (``.jpg``, 6-digit stems, masks by stem).

Every query image has a caption ``<stem>.txt`` beside it. Each source's ``train/good`` holds
``max(2 * per_class, 3)`` images so that every query can name three templates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath

import numpy as np

from iad_pipeline.datasets.catalog import GOODSAD_DEFECTS, MMAD_SOURCES, MVTEC_AD_DEFECTS
from iad_pipeline.synthetic.defects import defect_kinds
from iad_pipeline.synthetic.draw import style_for
from iad_pipeline.synthetic.layouts import goodsad_tree, mvtec_style, write_category
from iad_pipeline.synthetic.layouts_raw import visa_anomaly, visa_plan, write_loco_category
from iad_pipeline.synthetic.mmad_questions import KNOWLEDGE_KEY, caption, conversation, knowledge
from iad_pipeline.synthetic.report import SynthImage
from iad_pipeline.synthetic.writer import Drawn, Writer, binary

DEFAULT_CATEGORIES = ("bottle", "screw", "breakfast_box", "candle", "drink_bottle")
SOURCE_OF = {cat: source for source, cats in MMAD_SOURCES.items() for cat in cats}
TEMPLATES = 3
RBG_COLOURS = ((255, 0, 0), (0, 255, 0))

# A source writer returns (query images, template paths) of one category.
SourceWriter = Callable[[Writer, str], tuple[list[Drawn], list[str]]]


def _n_train(w: Writer) -> int:
    return max(2 * w.per_class, TEMPLATES)


def _ds_mvtec(w: Writer, cat: str) -> tuple[list[Drawn], list[str]]:
    style = mvtec_style(cat)
    templates = [
        w.save(f"MVTec-AD/{cat}/train/good/{i:03d}.png", w.good(style, cat, "tpl", i))
        for i in range(_n_train(w))
    ]
    base = f"DS-MVTec/{cat}"
    queries = []
    for i in range(w.per_class):
        rel = w.save(f"{base}/image/good/{i:03d}.png", w.good(style, cat, "good", i))
        queries.append(Drawn(SynthImage(cat, "test", "good", f"{i:03d}", rel, ()), style))
    for defect in MVTEC_AD_DEFECTS[cat]:
        for i in range(w.per_class):
            kinds = defect_kinds(defect, i)
            image, regions = w.defective(style, defect, i, cat, defect, i, kinds=kinds)
            rel = w.save(f"{base}/image/{defect}/{i:03d}.png", image)
            mask = w.save(
                f"{base}/mask/{defect}/{i:03d}_mask.png", binary(np.logical_or.reduce(regions))
            )
            coloured = np.zeros((*image.shape[:2], 3), np.uint8)
            for j, region in enumerate(regions):
                coloured[region] = RBG_COLOURS[j % len(RBG_COLOURS)]
            w.save(f"{base}/rbg_mask/{defect}/{i:03d}_rbg_mask.png", coloured)
            entry = SynthImage(cat, "test", defect, f"{i:03d}", rel, (mask,))
            queries.append(Drawn(entry, style, defect, kinds, regions))
    return queries, templates


def _split(drawn: list[Drawn]) -> tuple[list[Drawn], list[str]]:
    queries = [d for d in drawn if d.entry.split == "test"]
    return queries, [d.entry.image for d in drawn if d.entry.split == "train"]


def _loco(w: Writer, cat: str) -> tuple[list[Drawn], list[str]]:
    return _split(
        write_loco_category(w, f"MVTec-LOCO/{cat}", cat, validation=False, train=_n_train(w))
    )


def _goodsad(w: Writer, cat: str) -> tuple[list[Drawn], list[str]]:
    style = style_for(cat, texture=False)
    return _split(
        write_category(
            w,
            f"GoodsAD/{cat}",
            cat,
            style,
            GOODSAD_DEFECTS[cat],
            goodsad_tree(cat),
            train=_n_train(w),
        )
    )


def _visa(w: Writer, cat: str) -> tuple[list[Drawn], list[str]]:
    style = style_for(cat, texture=False)
    base = f"VisA/{cat}"
    n_train = _n_train(w)
    templates, queries = [], []
    for i in range(n_train + w.per_class):
        folder = "train" if i < n_train else "test"
        rel = w.save(f"{base}/{folder}/good/{i:04d}.JPG", w.good(style, cat, "normal", i))
        if folder == "train":
            templates.append(rel)
        else:
            queries.append(Drawn(SynthImage(cat, "test", "good", f"{i:04d}", rel, ()), style))
    for k, names in enumerate(visa_plan(cat, w.per_class)):
        image, regions, kinds = visa_anomaly(w, cat, style, k, names)
        rel = w.save(f"{base}/test/bad/{k:03d}.JPG", image)
        mask = w.save(f"{base}/ground_truth/bad/{k:03d}.png", binary(np.logical_or.reduce(regions)))
        queries.append(
            Drawn(
                SynthImage(cat, "test", "bad", f"{k:03d}", rel, (mask,)),
                style,
                names[0],
                kinds,
                regions,
            )
        )
    return queries, templates


SOURCE_WRITERS: dict[str, SourceWriter] = {
    "DS-MVTec": _ds_mvtec,
    "MVTec-LOCO": _loco,
    "VisA": _visa,
    "GoodsAD": _goodsad,
}


def _mask_path(drawn: Drawn, class_dir: str) -> str:
    masks = drawn.entry.masks
    if not masks:
        return ""
    if len(masks) > 1 or drawn.entry.source == "MVTec-LOCO":
        folder = PurePosixPath(masks[0]).parent.relative_to(class_dir)
        return f"{folder}/"
    return str(PurePosixPath(masks[0]).relative_to(class_dir))


def _entry(w: Writer, drawn: Drawn, class_dir: str, templates: Sequence[str]) -> dict:
    rng = w.rng("questions", drawn.entry.image)
    start = int(rng.integers(len(templates)))
    similar = [templates[(start + j) % len(templates)] for j in range(TEMPLATES)]
    random = [templates[int(j)] for j in rng.choice(len(templates), TEMPLATES, replace=False)]
    return {
        "image_path": str(PurePosixPath(drawn.entry.image).relative_to(class_dir)),
        "mask_path": _mask_path(drawn, class_dir),
        "similar_templates": similar,
        "random_templates": random,
        "conversation": conversation(drawn, drawn.entry.source, rng),
    }


def write_mmad(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """Source folders, captions, ``mmad.json`` and ``domain_knowledge.json``."""
    out: list[Drawn] = []
    questions: dict[str, dict] = {}
    domain: dict[str, dict[str, dict[str, str]]] = {k: {} for k in KNOWLEDGE_KEY.values()}
    for cat in categories:
        source = SOURCE_OF[cat]
        queries, templates = SOURCE_WRITERS[source](w, cat)
        class_dir = f"{source}/{cat}"
        for drawn in queries:
            drawn = dataclasses.replace(
                drawn, entry=dataclasses.replace(drawn.entry, source=source)
            )
            w.save_text(str(PurePosixPath(drawn.entry.image).with_suffix(".txt")), caption(drawn))
            questions[drawn.entry.image] = _entry(w, drawn, class_dir, templates)
            out.append(drawn)
        domain[KNOWLEDGE_KEY[source]][cat] = knowledge(source, cat, queries[0].style)
    w.save_json("mmad.json", questions)
    w.save_json("domain_knowledge.json", domain)
    return out
