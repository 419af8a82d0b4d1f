"""The tiny model folders, built once per session (helpers: emit_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.tiny_internvl import build_tiny_internvl3
from training.tiny_model import build_tiny_qwen25vl


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("emit_tiny")
    return {
        "qwen2_5_vl": build_tiny_qwen25vl(root / "qwen25vl", seed=0),
        "internvl": build_tiny_internvl3(root / "internvl3", seed=0),
    }
