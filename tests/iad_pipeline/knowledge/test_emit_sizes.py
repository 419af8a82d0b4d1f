"""Knowledge images are downscaled to the sizes EMIT's encode_image gives (truncation)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iad_pipeline.knowledge.images import png_bytes, scaled_size

CASES = json.loads((Path(__file__).parent / "golden" / "emit_sizes.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['size'][0]}x{c['size'][1]}" for c in CASES])
def test_scaled_size_equals_emit(case):
    assert list(scaled_size(*case["size"])) == case["emit"]


def test_cases_include_sizes_where_rounding_differs():
    assert sum(c["emit"] != c["rounded"] for c in CASES) >= 50


def test_encoded_image_has_emits_size():
    png = png_bytes(np.zeros((999, 1000, 3), np.uint8))  # 511.488 on the short side
    assert Image.open(io.BytesIO(png)).size == (512, 511)
    png = png_bytes(np.zeros((1000, 700, 3), np.uint8))  # 358.4
    assert Image.open(io.BytesIO(png)).size == (358, 512)
