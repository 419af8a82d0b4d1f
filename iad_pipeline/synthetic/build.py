"""``synthesize``: write one synthetic dataset in its real on-disk layout, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.catalog import categories as catalog_categories
from iad_pipeline.errors import IadError, UnknownDatasetError
from iad_pipeline.fsutil import atomic_path
from iad_pipeline.synthetic.layouts import (
    write_dtd_synthetic,
    write_goodsad,
    write_mpdd,
    write_mvtec_3d,
    write_mvtec_ad,
)
from iad_pipeline.synthetic.layouts_raw import write_dagm, write_mvtec_loco, write_visa
from iad_pipeline.synthetic.mmad import DEFAULT_CATEGORIES, write_mmad
from iad_pipeline.synthetic.report import SynthReport
from iad_pipeline.synthetic.writer import Drawn, Writer

MIN_SIZE = 64

LayoutWriter = Callable[[Writer, Iterable[str]], list[Drawn]]
WRITERS: dict[str, LayoutWriter] = {
    "mvtec_ad": write_mvtec_ad,
    "visa": write_visa,
    "mvtec_loco": write_mvtec_loco,
    "goodsad": write_goodsad,
    "mpdd": write_mpdd,
    "mvtec_3d": write_mvtec_3d,
    "dtd_synthetic": write_dtd_synthetic,
    "dagm": write_dagm,
    "mmad": write_mmad,
}


def resolve_categories(key: str, categories: Sequence[str] | None) -> list[str]:
    """The categories to write: the caller's (checked, duplicates dropped) or the defaults.

    Defaults are every real category of the key, except MMAD (one category per query set,
    two for DS-MVTec).

    >>> resolve_categories("mvtec_loco", None)[:2]
    ['breakfast_box', 'juice_bottle']
    >>> resolve_categories("mmad", None)
    ['bottle', 'screw', 'breakfast_box', 'candle', 'drink_bottle']
    >>> resolve_categories("dagm", ["Class2", "Class2"])
    ['Class2']
    """
    if key not in WRITERS:
        msg = f"unknown dataset key {key!r}; valid keys: {', '.join(DATASET_KEYS)}"
        raise UnknownDatasetError(msg)
    valid = catalog_categories(key)
    if categories is None:
        return list(DEFAULT_CATEGORIES if key == "mmad" else valid)
    if isinstance(categories, str):
        categories = [categories]
    unknown = [c for c in categories if c not in valid]
    if unknown or not categories:
        found = f"unknown categories {unknown}" if unknown else "an empty category list"
        msg = f"{key}: found {found}; valid categories: {', '.join(valid)}"
        raise IadError(msg)
    return list(dict.fromkeys(categories))


def _check_out(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        msg = f"{out}: exists and is not a folder; synthesize needs a new or empty folder"
        raise IadError(msg)
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        msg = (
            f"{out}: folder is not empty ({len(entries)} entries: {shown}); synthesize "
            "never overwrites or deletes, so pass a new or empty folder"
        )
        raise IadError(msg)


def synthesize(
    key: str,
    out: Path | str,
    *,
    per_class: int = 3,
    seed: int = 0,
    size: int = 128,
    categories: Sequence[str] | None = None,
    progress: bool = False,
) -> SynthReport:
    """Write a synthetic copy of dataset ``key`` into ``out`` in the real on-disk layout.

    Everything is written into a temporary sibling of ``out`` that is renamed to ``out`` at
    the end, so ``out`` is either complete or absent. Same arguments, same bytes.

    Args:
        key: Dataset key (``mvtec_ad``, ``visa``, ``mvtec_loco``, ``goodsad``, ``mpdd``,
            ``mvtec_3d``, ``dtd_synthetic``, ``dagm``, ``mmad``).
        out: Folder to create; it must not exist or be empty.
        per_class: Images per defect and per good test folder (train gets twice as many).
        seed: Seed of every drawing.
        size: Width and height of the images in pixels (at least 64).
        categories: Real category names to write; ``None`` for the defaults.
        progress: Show a progress bar over categories.

    Returns:
        The manifest of every image written.

    Raises:
        UnknownDatasetError: ``key`` is not a dataset key.
        IadError: Unknown category, bad ``per_class`` or ``size``, or ``out`` not empty.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "dagm"
        >>> report = synthesize("dagm", out, per_class=1, size=64, categories=["Class1"])
        >>> report.n_images, report.n_anomalous, report.images[1].image
        (6, 2, 'Class1/Train/0002.PNG')
    """
    cats = resolve_categories(key, categories)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        msg = f"{key}: per_class must be a positive integer, found {per_class!r}"
        raise IadError(msg)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        msg = f"{key}: size must be an integer of at least {MIN_SIZE} pixels, found {size!r}"
        raise IadError(msg)
    out = Path(out)
    _check_out(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        writer = Writer(tmp, key, seed=seed, size=size, per_class=per_class)
        bar = tqdm(cats, desc=f"synthetic {key}", unit="category", disable=not progress)
        drawn = WRITERS[key](writer, bar)
    return SynthReport(key, out, tuple(d.entry for d in drawn))
