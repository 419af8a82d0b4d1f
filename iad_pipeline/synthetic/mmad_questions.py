"""MMAD-style multiple-choice questions, captions and domain knowledge for synthetic images.

Answers follow from what was drawn: the defect name and kinds that were planted, the 3x3
grid cell of the defect's centre of mass, and the category's shape and colour. Options are
our own wording. ``annotation`` is ``True`` for the three questions read straight from the
ground truth (detection, classification, localisation) and ``False`` for the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iad_pipeline.datasets.catalog import DEFECTS, MMAD_SOURCES, MVTEC_LOCO_CONFIG_DEFECTS
from iad_pipeline.synthetic.defects import defect_kind, grid_cell
from iad_pipeline.synthetic.draw import PALETTE, Style
from iad_pipeline.synthetic.writer import Drawn

LETTERS = "ABCDE"
CELLS = (
    "top-left",
    "top-middle",
    "top-right",
    "middle-left",
    "center",
    "middle-right",
    "bottom-left",
    "bottom-middle",
    "bottom-right",
)
GENERIC_DEFECTS = (
    "scratch",
    "stain",
    "dent",
    "crack",
    "hole",
    "contamination",
    "missing part",
    "deformation",
)
LOOKS = {
    "scratch": "A thin line runs across the surface.",
    "blob": "An irregular patch of a different colour covers part of the surface.",
    "missing": "A piece of the object is gone and the background shows through.",
    "extra": "A lump of extra material sticks out of the object.",
    "missing_part": "One of the small parts that belong on the object is absent.",
    "extra_part": "There is one small part more than there should be.",
    "several": "Two different flaws appear in separate places.",
}
EFFECTS = {
    "scratch": "The surface is weakened and the scratch may grow into a crack.",
    "blob": "The product is contaminated and fails a visual inspection.",
    "missing": "The object is incomplete and cannot work as intended.",
    "extra": "The surplus material may stop the object from fitting.",
    "missing_part": "The assembly is incomplete and must be rejected.",
    "extra_part": "The package holds the wrong number of items.",
    "several": "Several flaws together make the product unusable.",
}
SHAPES = {
    "ellipse": "A rounded, oval body.",
    "rounded_rect": "A rectangular body with rounded corners.",
    "polygon": "An angular body with several straight edges.",
    "texture": "A flat surface covered by a repeating pattern.",
}
KNOWLEDGE_KEY = {
    "DS-MVTec": "MVTec",
    "MVTec-LOCO": "MVTec-LOCO",
    "VisA": "VisA",
    "GoodsAD": "GoodsAD",
}
SOURCE_KEY = {
    "DS-MVTec": "mvtec_ad",
    "MVTec-LOCO": "mvtec_loco",
    "VisA": "visa",
    "GoodsAD": "goodsad",
}


def human(name: str) -> str:
    """A folder name as words.

    >>> human("broken_large")
    'broken large'
    """
    return name.replace("_", " ")


def article(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its first letter).

    >>> article("orange"), article("red")
    ('an', 'a')
    """
    return "an" if word[:1].lower() in "aeiou" else "a"


def where(cell: str) -> str:
    """A grid cell as an answer option.

    >>> where("top-left"), where("center")
    ('In the top-left part of the image.', 'In the center of the image.')
    """
    return (
        "In the center of the image." if cell == "center" else f"In the {cell} part of the image."
    )


def choices(
    correct: str, distractors: Sequence[str], rng: np.random.Generator, n: int = 4
) -> tuple[dict[str, str], str]:
    """Options ``{"A": ..., ...}`` with ``correct`` at a random letter, and that letter.

    Distractors equal to the correct option or repeated are skipped; fewer than ``n``
    options remain when there are not enough distinct ones.

    >>> opts, answer = choices("red", ["blue", "red", "green"], np.random.default_rng(0), 3)
    >>> sorted(opts.values()), opts[answer]
    (['blue', 'green', 'red'], 'red')
    """
    others = list(dict.fromkeys(d for d in distractors if d != correct))[: n - 1]
    at = int(rng.integers(len(others) + 1))
    ordered = [*others[:at], correct, *others[at:]]
    return dict(zip(LETTERS, ordered, strict=False)), LETTERS[at]


def _question(kind: str, text: str, opts: dict[str, str], answer: str, annotated: bool) -> dict:
    return {
        "Question": text,
        "Answer": answer,
        "Options": opts,
        "type": kind,
        "annotation": annotated,
    }


def _sample(pool: Sequence[str], rng: np.random.Generator, k: int) -> list[str]:
    return [pool[i] for i in rng.permutation(len(pool))[:k]]


def look(kinds: Sequence[str]) -> str:
    """The kind key of a defect's look: its single kind, or ``several`` for mixed kinds."""
    distinct = tuple(dict.fromkeys(kinds))
    return distinct[0] if len(distinct) == 1 else "several"


def object_questions(
    source: str, category: str, style: Style, rng: np.random.Generator
) -> list[dict]:
    """Object Classification, Object Structure and Object Details questions."""
    others = [human(c) for c in MMAD_SOURCES[source] if c != category]
    opts, ans = choices(human(category), _sample(others, rng, 3), rng)
    out = [
        _question(
            "Object Classification", "What kind of product is shown in the image?", opts, ans, False
        )
    ]
    shapes = [v for k, v in SHAPES.items() if k != style.shape]
    opts, ans = choices(SHAPES[style.shape], _sample(shapes, rng, 3), rng)
    out.append(
        _question("Object Structure", "What is the overall shape of the object?", opts, ans, False)
    )
    colours = [name for name, _ in PALETTE if name != style.colour_name] + ["grey"]
    opts, ans = choices(style.colour_name, _sample(colours, rng, 3), rng)
    out.append(
        _question("Object Details", "What is the main colour of the object?", opts, ans, False)
    )
    return out


def defect_names(source: str, category: str) -> tuple[str, ...]:
    """The defect names a classification question draws distractors from first."""
    if source == "MVTec-LOCO":
        return MVTEC_LOCO_CONFIG_DEFECTS
    return DEFECTS[SOURCE_KEY[source]][category]


def conversation(drawn: Drawn, source: str, rng: np.random.Generator) -> list[dict]:
    """All questions of one query image: 8 types if anomalous, 4 if good."""
    category, style = drawn.entry.category, drawn.style
    opts, ans = {"A": "Yes", "B": "No"}, "A" if drawn.regions else "B"
    out = [_question("Anomaly Detection", "Is there any defect in the object?", opts, ans, True)]
    if drawn.regions:
        names = [human(d) for d in defect_names(source, category)]
        opts, ans = choices(
            human(drawn.defect),
            [*_sample(names, rng, len(names)), *_sample(GENERIC_DEFECTS, rng, 8)],
            rng,
        )
        out.append(
            _question(
                "Defect Classification",
                "There is a defect in the object. What type of defect is it?",
                opts,
                ans,
                True,
            )
        )
        cell = grid_cell(drawn.union)
        opts, ans = choices(
            where(cell),
            [where(c) for c in _sample(CELLS, rng, 9)],
            rng,
        )
        out.append(
            _question(
                "Defect Localization",
                "There is a defect in the object. Where is it?",
                opts,
                ans,
                True,
            )
        )
        key = look(drawn.kinds)
        opts, ans = choices(
            LOOKS[key], _sample([v for k, v in LOOKS.items() if k != key], rng, 6), rng
        )
        out.append(
            _question(
                "Defect Description",
                "There is a defect in the object. What does it look like?",
                opts,
                ans,
                False,
            )
        )
        opts, ans = choices(
            EFFECTS[key], _sample([v for k, v in EFFECTS.items() if k != key], rng, 6), rng
        )
        out.append(
            _question(
                "Defect Analysis",
                "There is a defect in the object. What effect may it have?",
                opts,
                ans,
                False,
            )
        )
    return out + object_questions(source, category, style, rng)


def caption(drawn: Drawn) -> str:
    """A one-sentence caption of a query image (MMAD keeps one ``.txt`` beside each image)."""
    style = drawn.style
    what = f"{style.colour_name} {human(drawn.entry.category)}"
    what = f"{article(what).capitalize()} {what}"
    what += " texture" if style.shape == "texture" else ""
    if not drawn.regions:
        return f"{what} with no visible defect.\n"
    flaw = LOOKS[look(drawn.kinds)].rstrip(".").lower()
    defect = human(drawn.defect)
    return (
        f"{what} with {article(defect)} {defect} defect "
        f"{where(grid_cell(drawn.union))[:-1].lower()}: {flaw}.\n"
    )


def knowledge(source: str, category: str, style: Style) -> dict[str, str]:
    """Domain knowledge of one category: one text per defect, ``good`` and ``combined``."""
    thing = f"{style.colour_name} {human(category)}"
    texts: dict[str, str] = {}
    for defect in DEFECTS[SOURCE_KEY[source]][category]:
        if defect == "logical_anomalies":
            kind = "missing_part"
            body = f"{LOOKS['missing_part']} Or: {LOOKS['extra_part'].lower()}"
        elif defect == "structural_anomalies":
            body = f"{LOOKS['scratch']} Or: {LOOKS['blob'].lower()}"
            kind = "scratch"
        else:
            kind = "several" if defect == "combined" else defect_kind(defect)
            body = LOOKS[kind]
        texts[defect] = f"{human(defect).capitalize()}: {body} {EFFECTS[kind]}"
    good = (
        f"A normal {thing} is complete and clean. "
        f"{SHAPES.get(style.shape, '')} Its colour is {style.colour_name}."
    )
    combined = " ".join([good, *texts.values()])
    return {**texts, "good": good, "combined": combined}
