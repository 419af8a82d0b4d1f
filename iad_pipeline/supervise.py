"""Child processes that never outlive their launcher, and one trainer per run folder.

:func:`run_supervised` runs a command (``iad train`` runs ``python -m training.grpo``) so
that it is never left running on its own:

- the child starts in its own process group, so a terminal's Ctrl-C reaches only the
  launcher, which forwards it (SIGINT, SIGTERM and SIGHUP alike) to the whole group and waits
  up to ``grace_s`` seconds for it to exit, then kills the group (SIGKILL); a second signal
  kills at once;
- if the launcher itself dies without a chance to forward anything (SIGKILL, a crash), the
  kernel kills the child: on Linux the child asks for ``PR_SET_PDEATHSIG`` = SIGKILL through
  ``prctl`` (ctypes) in ``preexec_fn`` before it runs the command, and exits at once if the
  launcher is already gone by then. Elsewhere there is no such mechanism and only the
  forwarding applies;
- after the child exits, whatever is left of its group is killed.

:func:`run_folder_lock` holds an exclusive ``flock`` on ``<folder>/.train.lock`` so two
trainers never write one run folder: a second ``iad train`` into the same folder stops with a
one-line error naming the holder's pid. The kernel releases a ``flock`` when the last
descriptor of it is closed, so a killed trainer never leaves a stale lock. The launcher
passes its descriptor to the child (``pass_fds``) and names it in ``$IAD_RUN_LOCK``
(``<fd>:<lock path>``): the lock stays held until launcher and trainer are both gone, and a
trainer that takes the lock itself (:func:`run_folder_lock` again, e.g. from
``training/grpo.py``) sees that it already holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from iad_pipeline.errors import IadError

log = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
LOCK_ENV = "IAD_RUN_LOCK"
PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunFolderLockedError(IadError):
    """Another trainer holds the run folder."""


@contextlib.contextmanager
def run_folder_lock(folder: Path | str) -> Iterator[int]:
    """Hold the run folder's trainer lock; yields its file descriptor.

    Raises:
        RunFolderLockedError: another process holds it (the message names its pid).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    inherited = _inherited_lock(path)
    if inherited is not None:
        yield inherited
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            msg = (
                f"{folder}: another trainer (pid {holder}) is writing this run folder "
                f"({path} is locked); wait for it to finish or stop it, or pass another --output"
            )
            raise RunFolderLockedError(msg) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield fd
    finally:
        os.close(fd)


def _inherited_lock(path: Path) -> int | None:
    """The descriptor named by ``$IAD_RUN_LOCK`` if it is this folder's lock, held by us."""
    value = os.environ.get(LOCK_ENV, "")
    fd_text, _, named = value.partition(":")
    if not fd_text.isdigit() or not named:
        return None
    try:
        if Path(named).resolve() != path.resolve():
            return None
        fd = int(fd_text)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            return None
    except OSError:
        return None
    return fd


def _die_with_parent(parent: int) -> None:  # runs in the child, between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # the launcher blocked them at fork
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def run_supervised(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    grace_s: float = 30.0,
) -> tuple[int, int | None]:
    """Run ``command`` as a supervised child; returns (exit code, forwarded signal or None).

    The exit code is the child's (negative: killed by that signal).
    """
    parent = os.getpid()
    received: list[int] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        sig = signum if len(received) == 1 else signal.SIGKILL
        log.warning(
            "got %s: %s the trainer",
            signal.Signals(signum).name,
            "stopping" if sig == signum else "killing",
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)

    previous = {s: signal.getsignal(s) for s in FORWARDED}
    # signals arriving between Popen and the handlers are held back, then forwarded
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        child = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            pass_fds=tuple(pass_fds),
            preexec_fn=lambda: _die_with_parent(parent),
        )
        for s in FORWARDED:
            signal.signal(s, forward)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    try:
        deadline = None
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if received and deadline is None:
                deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                log.warning("the trainer did not stop within %g s; killing it", grace_s)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                deadline = float("inf")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.poll() is None:  # an exception in the loop: never leave it running
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        # whatever the trainer started in its group goes with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    return code, (received[0] if received else None)
