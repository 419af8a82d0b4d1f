"""An image as the knowledge tests send it: photo-like noise, larger than the client's bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def image(tmp_path: Path) -> str:
    """An 800x600 photo-like PNG: the client must send it at 512x384."""
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(path)
    return str(path)
