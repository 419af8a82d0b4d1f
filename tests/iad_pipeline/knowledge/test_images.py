"""Images as the chat client sends them: PNG bytes, sizes, masks and data URLs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from iad_pipeline.knowledge.images import data_url, png_bytes, scaled_size


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_index_masks_are_binarised_to_0_255(tmp_path) -> None:
    mask = np.zeros((40, 30), np.uint8)
    mask[5:10, 5:10] = 1  # VisA-style index
    mask[20:22, 3:4] = 37  # LOCO-style region value
    path = tmp_path / "m.png"
    Image.fromarray(mask).save(path)
    out = _decoded(png_bytes(str(path), mask=True))
    assert sorted(np.unique(out).tolist()) == [0, 255]
    assert (out > 0).sum() == 25 + 2


def test_thin_defect_stays_visible_when_a_mask_is_downscaled() -> None:
    mask = np.zeros((2048, 1024), np.uint8)
    mask[1000, :] = 255  # one pixel row: an area average would fade it
    out = _decoded(png_bytes(mask, 512, mask=True))
    assert out.shape == (512, 256) and out.max() == 255


@pytest.mark.parametrize(
    ("shape", "dtype", "size"),
    [
        ((600, 800, 3), np.uint8, (512, 384)),
        ((1000, 250), np.uint8, (128, 512)),
        ((100, 60, 3), np.uint8, (60, 100)),  # never upscaled
        ((700, 700), np.uint16, (512, 512)),
        ((10, 10, 4), np.uint8, (10, 10)),
    ],
)
def test_png_bytes_sizes(shape, dtype, size) -> None:
    array = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype) * 3
    png = png_bytes(array)
    assert Image.open(io.BytesIO(png)).size == size == scaled_size(shape[1], shape[0])


def test_sixteen_bit_file_is_scaled_to_eight_bits(tmp_path) -> None:
    array = np.full((20, 20), 4000, np.uint16)
    array[0, 0] = 8000
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    out = _decoded(png_bytes(str(path)))
    assert out.dtype == np.uint8 and out.max() == 255 and out[1, 1] == 128


def test_data_url_is_png_base64(image) -> None:
    url = data_url(image)
    assert url.startswith("data:image/png;base64,iVBORw0KGgo")
