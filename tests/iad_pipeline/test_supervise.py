"""`iad train` never leaves its trainer running, and one trainer writes a run folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A stand-in for training/grpo.py (found first on PYTHONPATH): takes the run folder's lock as
# a trainer may, records its pid, then trains forever; SIGTERM is recorded, then it exits.
FAKE_GRPO = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from iad_pipeline.supervise import run_folder_lock

    out = Path(sys.argv[sys.argv.index("--output") + 1])
    ignore = os.environ.get("FAKE_IGNORE_TERM") == "1"

    def on_term(signum, frame):
        (out / "signal").write_text(signal.Signals(signum).name)
        if not ignore:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    with run_folder_lock(out):  # inherited from the launcher: no deadlock
        (out / ".pid").write_text(str(os.getpid()))
        os.replace(out / ".pid", out / "trainer.pid")
        while True:
            time.sleep(0.05)
    """
)


@pytest.fixture
def fake_training(tmp_path: Path) -> Path:
    package = tmp_path / "fake" / "training"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "grpo.py").write_text(FAKE_GRPO)
    return tmp_path / "fake"


def _env(fake: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{fake}{os.pathsep}{REPO}",
        "IAD_HOME": str(tmp_path / "home"),
        **extra,
    }


def _launch(fake: Path, tmp_path: Path, out: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iad_pipeline.cli",
            "train",
            "--recipe",
            "demo",
            "--output",
            str(out),
            "--training-set",  # any folder: the stand-in trainer reads nothing
            str(tmp_path),
        ],
        env=_env(fake, tmp_path, **extra),
        cwd=tmp_path,  # `-m` puts the working folder first on the path: not the repository
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the test's own group never receives the test's signals
    )


def _wait_for(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _trainer_pid(out: Path, launcher: subprocess.Popen[str]) -> int:
    started = _wait_for(lambda: (out / "trainer.pid").is_file() or launcher.poll() is not None)
    assert started and launcher.poll() is None, launcher.communicate()
    return int((out / "trainer.pid").read_text())


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_iad_train_is_forwarded_and_no_trainer_is_left(
    fake_training, tmp_path, sig
) -> None:
    out = tmp_path / "runs" / "demo"
    launcher = _launch(fake_training, tmp_path, out)
    pid = _trainer_pid(out, launcher)
    launcher.send_signal(sig)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + sig
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    assert (out / "signal").read_text() == sig.name  # the trainer got it and stopped
    assert _wait_for(lambda: not _alive(pid), 30)


def test_sigkill_of_iad_train_takes_the_trainer_with_it(fake_training, tmp_path) -> None:
    out = tmp_path / "runs" / "demo"
    launcher = _launch(fake_training, tmp_path, out)
    pid = _trainer_pid(out, launcher)
    launcher.kill()  # no chance to forward anything: the kernel's parent-death signal acts
    launcher.communicate(timeout=60)
    assert _wait_for(lambda: not _alive(pid), 30), f"trainer {pid} outlived its launcher"
    # and the folder's lock went with them: a new trainer starts
    again = _launch(fake_training, tmp_path, out)
    (out / "trainer.pid").unlink()
    new_pid = _trainer_pid(out, again)
    again.terminate()
    again.communicate(timeout=60)
    assert _wait_for(lambda: not _alive(new_pid), 30)


def test_a_second_trainer_into_the_same_folder_is_refused(fake_training, tmp_path) -> None:
    out = tmp_path / "runs" / "demo"
    first = _launch(fake_training, tmp_path, out)
    pid = _trainer_pid(out, first)
    try:
        second = _launch(fake_training, tmp_path, out)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert err.strip().splitlines() == [
            line for line in err.strip().splitlines() if line.startswith(("training", "iad:"))
        ]
        assert "another trainer (pid" in err and str(out) in err
        assert _alive(pid)  # the first one trains on
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert _wait_for(lambda: not _alive(pid), 30)


def test_a_trainer_ignoring_sigterm_is_killed_after_the_grace_period(
    fake_training, tmp_path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = textwrap.dedent(
        f"""
        import sys
        from iad_pipeline.supervise import run_supervised
        cmd = [sys.executable, "-m", "training.grpo", "--output", {str(out)!r}]
        print(run_supervised(cmd, grace_s=0.5))
        """
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code],
        env=_env(fake_training, tmp_path, FAKE_IGNORE_TERM="1"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pid = _trainer_pid(out, launcher)
    launcher.send_signal(signal.SIGTERM)
    stdout, _ = launcher.communicate(timeout=60)
    assert (out / "signal").read_text() == "SIGTERM"  # received, ignored
    assert stdout.strip() == f"({-signal.SIGKILL}, {int(signal.SIGTERM)})"
    assert not _alive(pid)
