"""Content fingerprints of checkpoints: what decides whether two evaluations are the same.

:func:`checkpoint_fingerprint` is the sha256 of the folder's model files (weights, adapters,
configs, tokenizer and chat template): every regular file except the training state that does
not change answers (optimizer, scheduler, RNG states, ``trainer_state.json``,
``training_args.bin``, the ``DONE`` marker) and hidden files. Re-training into the same
``checkpoint-N`` name changes it; touching or copying the files does not.

Hashing gigabytes every time would be slow, so each file's digest is cached, keyed by its
device, inode, size, modification and status-change times (``st_ctime_ns`` cannot be set back
by a user, so a rewrite that restores the old mtime is still seen). The cache lives in memory
and, given ``cache_dir``, in one small JSON file per hashed file.

The checkpoint sensor and the answer store (through the evaluation pipeline) both call this one
function, so "the sensor saw new content" and "the evaluation asks every question again" agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from iad_pipeline.fsutil import write_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Files of a checkpoint folder that hold training state, not the model answering questions.
TRAINING_STATE = re.compile(
    r"^(optimizer\.pt|scheduler\.pt|rng_state(_\d+)?\.pth|trainer_state\.json|"
    r"training_args\.bin|DONE|scaler\.pt)$"
)

_memory: dict[str, tuple[tuple[int, ...], str]] = {}


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: Path | str, cache_dir: Path | str | None = None) -> str:
    """Hex sha256 of a file's bytes, cached by its stat key (in memory and in ``cache_dir``).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    path = Path(path).absolute()
    key = _stat_key(path.stat())
    name = str(path)
    cached = _memory.get(name)
    if cached is not None and cached[0] == key:
        return cached[1]
    entry = None
    if cache_dir is not None:
        entry = Path(cache_dir) / (hashlib.sha1(name.encode("utf-8")).hexdigest()[:24] + ".json")
        try:
            found = json.loads(entry.read_text(encoding="utf-8"))
            if found.get("path") == name and tuple(found.get("key", ())) == key:
                _memory[name] = (key, found["sha256"])
                return found["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or unreadable cache entry: hash again and rewrite it
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    after = _stat_key(os.stat(path))
    sha = digest.hexdigest()
    if after != key:  # written while we read: do not cache a digest of mixed content
        log.debug("%s changed while hashing; not cached", path)
        return sha
    _memory[name] = (key, sha)
    if entry is not None:
        try:
            write_json(entry, {"path": name, "key": list(key), "sha256": sha})
        except OSError as exc:
            log.debug("fingerprint cache %s not written: %s", entry, exc)
    return sha


def model_files(checkpoint: Path | str) -> list[Path]:
    """The files that make up the model in a checkpoint folder, sorted by relative path."""
    root = Path(checkpoint)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or TRAINING_STATE.match(name):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def checkpoint_fingerprint(checkpoint: Path | str, cache_dir: Path | str | None = None) -> str:
    """Hex sha256 over the relative path and sha256 of every model file of the checkpoint.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "model.safetensors").write_bytes(b"weights")
    >>> _ = (d / "optimizer.pt").write_bytes(b"state")
    >>> before = checkpoint_fingerprint(d)
    >>> _ = (d / "optimizer.pt").write_bytes(b"other state")
    >>> checkpoint_fingerprint(d) == before
    True
    >>> _ = (d / "model.safetensors").write_bytes(b"new weights")
    >>> checkpoint_fingerprint(d) == before
    False
    """
    root = Path(checkpoint)
    if not root.is_dir():
        msg = f"{root}: not a folder; expected a checkpoint folder"
        raise NotADirectoryError(msg)
    digest = hashlib.sha256()
    for path in model_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{file_sha256(path, cache_dir)}\n".encode())
    return digest.hexdigest()
