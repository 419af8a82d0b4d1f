"""Fetch under faults and hostile archives: links out of the dataset, concurrent runs, leftovers.

Each test rebuilds an attack of issue 10 against :func:`iad_pipeline.datasets.fetch.fetch`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tarfile
from pathlib import Path

import pytest

from iad_pipeline.datasets.fetch import Source, dataset_path, fetch, lock_path, marker_path
from iad_pipeline.errors import LockBusyError, UnsafeArchiveError
from iad_pipeline.fsutil import file_lock
from iad_pipeline.synthetic import pack_archive, synthesize

QUIET = {"progress": False, "env": {}, "accept_license": True}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mpdd_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("trees") / "mpdd"
    synthesize("mpdd", tree, per_class=1, categories=["tubes"])
    return tree


def wrapped_tar(tree: Path, path: Path, links: dict[str, str]) -> Path:
    """``tree`` inside a single wrapper folder ``MPDD/``, plus ``links`` (name -> target)."""
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tree, arcname="MPDD")
        for name, target in links.items():
            info = tarfile.TarInfo(f"MPDD/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def test_a_link_up_out_of_the_wrapper_folder_is_refused(mpdd_tree, tmp_path) -> None:
    # Inside the archive, MPDD/up -> .. points at the extraction folder (allowed there); once
    # the wrapper MPDD/ becomes the dataset folder it would point at the data folder.
    archive = wrapped_tar(mpdd_tree, tmp_path / "mpdd.tar.gz", {"up": ".."})
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match=r"'up' is a symlink to '\.\.', outside"):
        fetch(
            "mpdd",
            data_dir=data_dir,
            **QUIET,
            source=Source(from_path=archive, sha256=sha256(archive)),
        )
    assert not dataset_path(data_dir, "mpdd").exists()
    assert not marker_path(data_dir, "mpdd").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == [".mpdd.lock"]  # no staging left


def test_links_that_stay_inside_the_wrapper_folder_are_kept(mpdd_tree, tmp_path) -> None:
    archive = wrapped_tar(mpdd_tree, tmp_path / "mpdd.tar.gz", {"tubes/same": "train"})
    data_dir = tmp_path / "data"
    fetch(
        "mpdd", data_dir=data_dir, **QUIET, source=Source(from_path=archive, sha256=sha256(archive))
    )
    link = dataset_path(data_dir, "mpdd") / "tubes" / "same"
    assert link.is_symlink() and os.readlink(link) == "train"


def _fetch_in_child(archive: str, digest: str, data_dir: str, queue) -> None:
    try:
        fetch(
            "mpdd",
            data_dir=Path(data_dir),
            **QUIET,
            source=Source(from_path=Path(archive), sha256=digest),
        )
        queue.put("ok")
    except LockBusyError as exc:
        queue.put(f"busy: {exc}")


def test_a_second_fetch_of_the_same_dataset_fails_at_once(mpdd_tree, tmp_path) -> None:
    archive, digest = pack_archive("mpdd", mpdd_tree)
    data_dir = tmp_path / "data"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    # This process plays the first fetch, holding the dataset's lock mid-download.
    with file_lock(lock_path(data_dir, "mpdd")):
        child = ctx.Process(target=_fetch_in_child, args=(archive, digest, data_dir, queue))
        child.start()
        answer = queue.get(timeout=60)
        child.join(timeout=60)
    assert answer.startswith("busy: dataset 'mpdd' in ")
    assert f"pid {os.getpid()}" in answer and "\n" not in answer
    assert not dataset_path(data_dir, "mpdd").exists()
    # Once the first run is done, the same command installs it.
    fetch("mpdd", data_dir=data_dir, **QUIET, source=Source(from_path=archive, sha256=digest))
    assert marker_path(data_dir, "mpdd").is_file()


def test_waiting_for_the_lock_finds_the_dataset_installed(mpdd_tree, tmp_path) -> None:
    archive, digest = pack_archive("mpdd", mpdd_tree)
    data_dir = tmp_path / "data"
    fetch("mpdd", data_dir=data_dir, **QUIET, source=Source(from_path=archive, sha256=digest))
    record = fetch(
        "mpdd",
        data_dir=data_dir,
        lock_timeout=None,
        **QUIET,
        source=Source(from_path=archive, sha256=digest),
    )
    assert record.already_installed


def test_staging_left_by_a_killed_fetch_is_removed_and_nothing_else(mpdd_tree, tmp_path) -> None:
    archive, digest = pack_archive("mpdd", mpdd_tree)
    data_dir = tmp_path / "data"
    stale = data_dir / ".mpdd.0123abcd.staging"
    (stale / "x" / "tubes").mkdir(parents=True)
    (stale / "x" / "tubes" / "big.bin").write_bytes(b"\0" * 1024)
    (data_dir / ".mpdd.89abcdef.link").symlink_to(mpdd_tree)
    # Not ours: another dataset's staging, a user's hidden folder, a look-alike name.
    keep = [data_dir / ".visa.0123abcd.staging", data_dir / ".mpdd.notes", data_dir / "x.staging"]
    for folder in keep:
        folder.mkdir()
    fetch("mpdd", data_dir=data_dir, **QUIET, source=Source(from_path=archive, sha256=digest))
    assert not stale.exists()
    assert not (data_dir / ".mpdd.89abcdef.link").is_symlink()
    assert mpdd_tree.is_dir() and any(mpdd_tree.iterdir())  # the link was not followed
    assert all(folder.is_dir() for folder in keep)


def _hold_forever(path: str, ready) -> None:
    with file_lock(path):
        ready.set()
        import time

        time.sleep(600)


def test_file_lock_names_its_holder_and_dies_with_it(tmp_path) -> None:
    lock = tmp_path / "x.lock"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(str(lock), ready))
    holder.start()
    try:
        assert ready.wait(60)
        busy = rf"the test lock is in use .*\(pid {holder.pid}\)"
        with pytest.raises(LockBusyError, match=busy), file_lock(lock, what="the test lock"):
            pass
    finally:
        holder.kill()
        holder.join()
    with file_lock(lock, timeout=5):  # a killed holder leaves no stale lock
        pass
