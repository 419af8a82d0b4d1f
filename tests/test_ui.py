"""The Dagster UI, started on loopback, serves the asset graph we define and shows the
lineage from raw_dataset to mmad_eval.

Needs Debian's chromium (``.ci/run`` installs it); elsewhere the test is skipped when no
chromium is on PATH. The screenshot is kept in ``test-artifacts/`` for people to look at.
"""

import json
import os
import re
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


# upstream -> downstream, as iad_pipeline/definitions.py wires the assets (by hand, not read
# from the code: the test fails when the graph the UI serves drifts from this)
EDGES = {
    ("raw_dataset", "samples"),
    ("samples", "annotations"),
    ("samples", "domain_knowledge"),
    ("samples", "text_samples"),
    ("annotations", "text_samples"),
    ("domain_knowledge", "text_samples"),
    ("samples", "question_bank"),
    ("annotations", "question_bank"),
    ("question_bank", "training_set"),
    ("domain_knowledge", "training_set"),
    ("training_set", "grpo_run"),
    ("grpo_run", "mmad_eval"),
    ("question_bank", "mmad_eval"),
    ("grpo_run", "cross_dataset_eval"),
    ("question_bank", "cross_dataset_eval"),
}
# what the lineage page of mmad_eval (upstream) shows, and what it leaves out
UPSTREAM_OF_MMAD_EVAL = {
    "raw_dataset",
    "samples",
    "annotations",
    "domain_knowledge",
    "question_bank",
    "training_set",
    "grpo_run",
    "mmad_eval",
}
ASSET_GRAPH_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def served_edges(port: int) -> set[tuple[str, str]]:
    """The asset graph's edges as the webserver's GraphQL API serves them to the UI."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": ASSET_GRAPH_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        nodes = json.load(response)["data"]["assetNodes"]
    return {
        ("/".join(up["path"]), "/".join(node["assetKey"]["path"]))
        for node in nodes
        for up in node["dependencyKeys"]
    }


def shown(name: str, dom: str) -> bool:
    """``name`` as a whole word of the page (``samples`` is not found in ``text_samples``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", dom) is not None


# the name inside an asset node of the graph: <div class="AssetNode_assetName__<hash> ...">name<
ASSET_NODE_NAME = re.compile(r'class="[^"]*\bAssetNode_\w*[nN]ame\w*[^"]*"[^>]*>([^<]+)<')


def drawn_nodes(dom: str) -> set[str]:
    """The names of the asset nodes the lineage graph draws."""
    return set(ASSET_NODE_NAME.findall(dom))


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
        edges = served_edges(port)
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
            if shown("raw_dataset", dom):
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
    (ARTIFACTS / "ui-lineage.html").write_text(dom, encoding="utf-8")
    assert edges == EDGES
    missing = sorted(name for name in UPSTREAM_OF_MMAD_EVAL if not shown(name, dom))
    assert missing == [], "missing from the lineage page (test-artifacts/ui-lineage.html)"
    # one node per upstream asset; text_samples and cross_dataset_eval are not upstream
    assert drawn_nodes(dom) == UPSTREAM_OF_MMAD_EVAL
    assert shot.is_file() and shot.stat().st_size > 10_000
