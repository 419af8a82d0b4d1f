"""The Dagster UI, started on loopback, shows the lineage from raw_dataset to mmad_eval.

Needs Debian's chromium (``.ci/run`` installs it); elsewhere the test is skipped when no
chromium is on PATH. The screenshot is kept in ``test-artifacts/`` for people to look at.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=30000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds} s")


@pytest.mark.slow
def test_ui_shows_the_lineage_from_raw_dataset_to_mmad_eval(tmp_path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    port = free_port()
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "IAD_HOME": str(tmp_path)}
    dg = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "dg"
    server = subprocess.Popen(
        [str(dg), "dev", "-p", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", 120)
        url = (
            f"http://127.0.0.1:{port}/assets/mmad_eval?view=lineage"
            "&lineageScope=upstream&lineageDepth=10"
        )
        dom = ""
        for _ in range(3):  # the code location may still be loading on the first try
            dom = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / 'c1'}",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            if "raw_dataset" in dom:
                break
            time.sleep(5)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "ui-lineage.png"
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'c2'}",
                "--window-size=1600,1000",
                f"--screenshot={shot}",
                url,
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        # dg dev ignores SIGINT/SIGTERM (it shuts down through a pipe): kill the group
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    for name in ("raw_dataset", "samples", "question_bank", "mmad_eval"):
        assert name in dom, f"{name} missing from the lineage page"
    assert shot.is_file() and shot.stat().st_size > 10_000
