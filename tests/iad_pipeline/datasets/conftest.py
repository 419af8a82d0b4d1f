"""Synthetic datasets shared by the reader, fetch and CLI tests (written once per session),
the loopback HTTP server of the download tests, and the list their backoff sleeps go to."""

import shutil
from pathlib import Path

import pytest

from iad_pipeline.synthetic import SynthReport, synthesize
from tests.support.http_server import LoopbackServer

# Small subsets keep the suite quick; each still exercises its layout's quirks.
SUBSETS: dict[str, list[str] | None] = {
    "mvtec_ad": ["bottle", "grid"],
    "visa": ["candle", "pcb1"],
    "mvtec_loco": ["breakfast_box"],
    "goodsad": ["drink_bottle"],
    "mpdd": ["tubes", "metal_plate"],
    "mvtec_3d": ["bagel"],
    "dtd_synthetic": ["Woven_001"],
    "dagm": ["Class1", "Class2"],
    "mmad": None,
}


class SynthCache:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.reports: dict[str, SynthReport] = {}

    def get(self, key: str) -> SynthReport:
        if key not in self.reports:
            self.reports[key] = synthesize(
                key, self.base / key, per_class=2, categories=SUBSETS[key]
            )
        return self.reports[key]

    def copy(self, key: str, dest: Path) -> tuple[SynthReport, Path]:
        report = self.get(key)
        shutil.copytree(report.root, dest, symlinks=True)
        return report, dest


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthCache:
    return SynthCache(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff sleeps, recorded instead of slept."""
    return []
