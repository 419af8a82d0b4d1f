"""mmad.json paths that leave the data root are refused with one line naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iad_pipeline.datasets.fetch import Source, fetch
from iad_pipeline.datasets.ingest import read_samples
from iad_pipeline.errors import LayoutError
from iad_pipeline.questions.mmad_json import read_mmad_json


@pytest.fixture
def mmad_copy(synth, tmp_path) -> tuple[Path, Path, dict]:
    """A synthetic MMAD folder and a readable PNG outside it."""
    _, root = synth.copy("mmad", tmp_path / "MMAD")
    data = json.loads((root / "mmad.json").read_text())
    first_key = next(iter(data))
    secret = tmp_path / "secret.png"
    secret.write_bytes((root / first_key).read_bytes())
    return root, secret, data


def attacks(root: Path, secret: Path, data: dict) -> dict[str, tuple[dict, str]]:
    key, entry = next(iter(data.items()))
    up = os.path.relpath(secret, root)  # ../secret.png
    source, category = key.split("/")[:2]
    return {
        "absolute key": ({str(secret): entry}, r"key '/.*secret\.png' is an absolute path"),
        "dot-dot key": (
            {f"{source}/{category}/../../{up}": entry},
            r"key .* has a '\.\.' component",
        ),
        "dot-dot template": (
            {key: {**entry, "similar_templates": [up]}},
            r"similar_templates '\.\./secret\.png' \(entry .*\) has a '\.\.' component",
        ),
        "absolute mask": ({key: {**entry, "mask_path": str(secret)}}, "mask_path .* absolute"),
    }


@pytest.mark.parametrize(
    "attack", ["absolute key", "dot-dot key", "dot-dot template", "absolute mask"]
)
def test_paths_out_of_the_root_are_refused_by_every_reader(mmad_copy, tmp_path, attack):
    root, secret, data = mmad_copy
    bad, why = attacks(root, secret, data)[attack]
    (root / "mmad.json").write_text(json.dumps({**data, **bad}))
    data_dir = tmp_path / "data"
    fetch(
        "mmad",
        data_dir=data_dir,
        accept_license=True,
        progress=False,
        env={},
        source=Source(from_path=root),
    )

    with pytest.raises(LayoutError, match=rf"^{root / 'mmad.json'}: {why}"):
        read_mmad_json(root / "mmad.json", root)
    with pytest.raises(LayoutError, match=why):
        read_samples("mmad", data_dir, workers=1)


def test_the_cli_says_it_in_one_line_without_a_traceback(mmad_copy, tmp_path) -> None:
    root, secret, data = mmad_copy
    bad, _ = attacks(root, secret, data)["absolute key"]
    (root / "mmad.json").write_text(json.dumps({**data, **bad}))
    env = {**os.environ, "IAD_HOME": str(tmp_path / "home"), "IAD_PROFILE": "real"}
    env["COLUMNS"] = "300"
    run = [sys.executable, "-m", "iad_pipeline.cli"]
    fetched = subprocess.run(
        [*run, "datasets", "fetch", "mmad", "--from", str(root), "--accept-license"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    proc = subprocess.run(
        [*run, "questions", "mmad", "--out", str(tmp_path / "q.parquet"), "-q"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    data_json = tmp_path / "home" / "data" / "mmad" / "mmad.json"  # the link to root
    assert lines[0].startswith(f"iad: error: {data_json}: key ")
    assert not (tmp_path / "q.parquet").exists()


def test_an_mmad_json_fifo_is_refused_without_blocking(tmp_path) -> None:
    import threading

    fifo = tmp_path / "mmad.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_mmad_json(fifo, tmp_path)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # the guard: unblock the reader, then fail
        with open(fifo, "w"):
            pass
        reader.join(timeout=5)
        pytest.fail("reading a FIFO mmad.json blocked")
    assert isinstance(outcome[0], LayoutError)
    assert str(outcome[0]).startswith(f"{fifo}: not a regular file")
