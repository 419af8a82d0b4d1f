"""The manifest of a synthetic dataset: what was written, where, with which label.

Layout readers are tested against this manifest: for every image it names the category,
split and label the reader must report, and the mask files it must pair with the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SynthImage:
    """One image of a synthetic dataset, as a layout reader should report it.

    Attributes:
        category: Category (class) name, as on disk (``bottle``, ``Class3``, ``Woven_001``).
        split: ``train``, ``val`` or ``test`` (LOCO's and 3D-AD's ``validation`` is ``val``).
        label: ``good`` or the defect name the reader reports (VisA: ``bad``, DAGM: ``defect``).
        stem: File stem of the image (``000``, ``0002``, ``001000``).
        image: Image path relative to the dataset root, with forward slashes.
        masks: Mask paths relative to the root; empty for good images, several for LOCO.
        source: MMAD only: the query set (``DS-MVTec``, ``MVTec-LOCO``, ``VisA``, ``GoodsAD``).
    """

    category: str
    split: str
    label: str
    stem: str
    image: str
    masks: tuple[str, ...]
    source: str = ""

    @property
    def is_anomalous(self) -> bool:
        """``True`` unless the label is ``good``.

        >>> SynthImage("bottle", "test", "good", "000", "bottle/test/good/000.png", ()).is_anomalous
        False
        """
        return self.label != "good"


@dataclass(frozen=True)
class SynthReport:
    """Everything :func:`iad_pipeline.synthetic.synthesize` wrote.

    Attributes:
        key: Dataset key (``mvtec_ad``, ``visa``, ...).
        root: The dataset folder (the ``out`` argument).
        images: One entry per image, in the order they were written.
    """

    key: str
    root: Path
    images: tuple[SynthImage, ...]

    @property
    def n_images(self) -> int:
        """Number of images in the manifest (MMAD: query images only, no templates)."""
        return len(self.images)

    @property
    def n_anomalous(self) -> int:
        """Number of images whose label is not ``good``."""
        return sum(1 for im in self.images if im.is_anomalous)

    @property
    def n_masks(self) -> int:
        """Number of mask files listed (LOCO counts one per region)."""
        return sum(len(im.masks) for im in self.images)

    def categories(self) -> tuple[str, ...]:
        """Category names in the order they were written, each once."""
        return tuple(dict.fromkeys(im.category for im in self.images))
