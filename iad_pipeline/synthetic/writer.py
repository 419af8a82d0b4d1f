"""Writing one synthetic dataset: seeded drawing, encoding by suffix, and the manifest.

Every file goes under a private temporary folder that :func:`iad_pipeline.synthetic.synthesize`
renames into place at the end, so files are written directly (no per-file temp names).
Encoders add no timestamps, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from iad_pipeline.errors import IadError
from iad_pipeline.synthetic.defects import defect_kinds, plant
from iad_pipeline.synthetic.draw import Style, render, stable_int, view
from iad_pipeline.synthetic.report import SynthImage

JPEG_QUALITY = 92


@dataclass
class Drawn:
    """An image that was written, with what the MMAD questions need to know about it.

    Attributes:
        entry: Its manifest entry.
        style: The category's style.
        defect: Concrete defect name (VisA's defect type, LOCO's config name), ``""`` if good.
        kinds: Kinds of the planted regions (``scratch``, ``blob``...), empty if good.
        regions: Region masks (bool arrays), empty if good.
    """

    entry: SynthImage
    style: Style
    defect: str = ""
    kinds: tuple[str, ...] = ()
    regions: list[np.ndarray] = field(default_factory=list)

    @property
    def union(self) -> np.ndarray:
        """All defect pixels of the image."""
        return np.logical_or.reduce(self.regions)


def encode(path: str, array: np.ndarray) -> bytes:
    """Encode an image by the suffix of ``path`` (png, jpg, tiff; any case).

    Three-channel arrays are taken as RGB (for xyz maps: x, y, z) and stored in that order.

    >>> len(encode("a.PNG", np.zeros((4, 4), np.uint8))) > 0
    True
    """
    suffix = Path(path).suffix.lower()
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    elif suffix not in (".png", ".tif", ".tiff"):
        msg = f"{path}: cannot encode {suffix!r}; expected .png, .jpg or .tiff"
        raise IadError(msg)
    if array.ndim == 3 and array.shape[2] == 3:
        array = np.ascontiguousarray(array[..., ::-1])  # OpenCV stores BGR
    ok, data = cv2.imencode(suffix, array, params)
    if not ok:
        msg = f"{path}: OpenCV could not encode a {array.dtype} array of shape {array.shape}"
        raise IadError(msg)
    return data.tobytes()


class Writer:
    """Writes files of one dataset under ``root`` and seeds each image's generator."""

    def __init__(self, root: Path, key: str, *, seed: int, size: int, per_class: int) -> None:
        self.root = root
        self.key = key
        self.seed = seed
        self.size = size
        self.per_class = per_class

    def rng(self, *parts: str | int) -> np.random.Generator:
        """A generator seeded by the dataset seed, the key and ``parts`` (stable ints)."""
        ints = [p if isinstance(p, int) else stable_int(p) for p in parts]
        return np.random.default_rng([self.seed, stable_int(self.key), *ints])

    def save(self, rel: str, array: np.ndarray) -> str:
        """Encode ``array`` to ``root/rel``; return ``rel``."""
        return self.save_bytes(rel, encode(rel, array))

    def save_bytes(self, rel: str, data: bytes) -> str:
        """Write raw bytes to ``root/rel``; return ``rel``."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return rel

    def save_text(self, rel: str, text: str) -> str:
        """Write UTF-8 text to ``root/rel``; return ``rel``."""
        return self.save_bytes(rel, text.encode("utf-8"))

    def save_json(self, rel: str, obj: object) -> str:
        """Write indented, key-sorted JSON to ``root/rel``; return ``rel``."""
        return self.save_text(rel, json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def good(self, style: Style, *ids: str | int) -> np.ndarray:
        """A defect-free image in its stored form, seeded by ``ids``."""
        scene = render(style, self.size, self.rng(*ids))
        return view(scene.image, style.gray)

    def defective(
        self,
        style: Style,
        defect: str,
        index: int,
        *ids: str | int,
        kinds: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """An image with ``defect`` planted (kinds from its name unless given) and its regions."""
        rng = self.rng(*ids)
        scene = render(style, self.size, rng)
        return plant(scene, kinds or defect_kinds(defect, index), rng, gray=style.gray)


def binary(mask: np.ndarray) -> np.ndarray:
    """A bool mask as single-channel uint8 0/255.

    >>> binary(np.array([[True, False]])).tolist()
    [[255, 0]]
    """
    return np.where(mask, 255, 0).astype(np.uint8)


def licence_files(writer: Writer, name: str) -> None:
    """``license.txt`` and ``readme.txt`` at the root, saying the data is synthetic."""
    licence = (
        f"Synthetic stand-in for {name}, generated by iad-pipeline for offline tests.\n"
        "It contains no images of the real dataset. Apache-2.0, like the generator.\n"
    )
    readme = (
        f"SYNTHETIC DATA. This tree copies the on-disk layout of {name}\n"
        "with procedurally drawn images and exact masks. Do not use it to measure anything.\n"
    )
    writer.save_text("license.txt", licence)
    writer.save_text("readme.txt", readme)
