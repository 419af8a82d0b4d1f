"""A real Ray cluster on loopback for the session: 2 CPUs, the job server, a temp folder.

Started with ``ray start --head`` on free ports; stopped by ending the processes that name
this cluster's temp folder (``ray stop`` would end every Ray cluster on the machine). Its
workers import this checkout: the cluster inherits ``PYTHONPATH`` with the repository first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


@dataclass(frozen=True)
class LocalCluster:
    gcs: str  # 127.0.0.1:PORT, what ray.init(address=...) takes
    dashboard: str  # http://127.0.0.1:PORT, what the job client takes
    env: dict[str, str]  # the environment the cluster was started with


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        # the cluster's job entrypoints run `python`: this interpreter's folder first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a loopback cluster without token authentication (Ray turns it on when a token
        # file exists in ~/.ray, and its job client then fails without one)
        "RAY_AUTH_MODE": "disabled",
        "PYTHONWARNINGS": "ignore",
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    # a short temp folder: Ray's socket paths must stay under 107 characters
    temp = Path(tempfile.mkdtemp(prefix="iadray-", dir="/tmp"))
    port, dash = _free_port(), _free_port()
    env = cluster_env()
    start = [
        str(RAY),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        # every fixed default port taken from the free ones: a second Ray on the machine
        # (a developer's own cluster) must not keep this one's agent from starting
        *(
            f"--{name}={_free_port()}"
            for name in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "metrics-export-port",
                "runtime-env-agent-port",
                "ray-client-server-port",
            )
        ),
        f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        shutil.rmtree(temp, ignore_errors=True)
        pytest.fail(f"ray start failed:\n{proc.stdout}\n{proc.stderr}")
    cluster = LocalCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", env)
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this process's clients, as the cluster
    try:
        _wait_for_job_server(cluster.dashboard)
        yield cluster
    finally:
        leave_cluster()
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def leave_cluster() -> None:
    """Disconnect this process's Ray driver, where a test left one connected: once the
    cluster stops, a connected driver aborts its process after a minute (pytest's exit code
    then says "failed" although every test passed)."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def stop_cluster(temp: Path, grace: float = 5) -> None:
    """End the processes of the cluster started with ``--temp-dir=temp``, and only those.

    ``ray stop`` would end every Ray process on the machine; every process of this cluster
    (GCS, raylet, dashboard, workers) names its temp or session folder on its command line.
    """
    import psutil

    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and str(temp) in " ".join(proc.info["cmdline"] or ()):
                mine.append(proc)
        except psutil.Error:
            continue
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _wait_for_job_server(url: str, timeout: float = 180) -> None:
    """Until a trivial job runs: the job server answers before the node's agent can run jobs
    ("No available agent to submit job")."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout
    while True:
        try:
            client = JobSubmissionClient(url)
            job = client.submit_job(entrypoint=f"{sys.executable} -c pass")
            while not client.get_job_status(job).is_terminal():
                time.sleep(0.2)
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)
