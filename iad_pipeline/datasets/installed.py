"""What an installed dataset leaves beside its folder: the marker and the lock.

``<data-dir>/<key>.complete`` (JSON, an :class:`InstallRecord`) records the source, the
digests, the licence and any warnings of an installation; a dataset is installed when its
folder and its marker both exist. ``<data-dir>/.<key>.lock`` is held while it is fetched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from iad_pipeline import __version__
from iad_pipeline.errors import DatasetNotInstalledError

log = logging.getLogger(__name__)


@dataclass
class InstallRecord:
    """What ``<data-dir>/<key>.complete`` holds."""

    key: str
    name: str
    licence: str
    mode: str  # download | archive | folder
    source: str
    path: str
    resources: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    synthetic: bool = False
    installed_at: str = ""
    iad_version: str = __version__
    already_installed: bool = False
    variant: str = ""  # e.g. "emit": MMAD installed from EMIT's corrected ALL_DATA

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data.pop("already_installed")
        return data


def lock_path(data_dir: Path, key: str) -> Path:
    """The lock file held while ``key`` is fetched: ``<data-dir>/.<key>.lock``."""
    return data_dir / f".{key}.lock"


def marker_path(data_dir: Path, key: str) -> Path:
    return data_dir / f"{key}.complete"


def dataset_path(data_dir: Path, key: str) -> Path:
    return data_dir / key


def read_marker(data_dir: Path, key: str) -> InstallRecord | None:
    """The install record of ``key``, or ``None`` if it is not (completely) installed."""
    path = marker_path(data_dir, key)
    if not path.is_file() or not dataset_path(data_dir, key).is_dir():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return InstallRecord(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        log.warning("%s: unreadable marker (%s); treating %s as not installed", path, exc, key)
        return None


def require_installed(data_dir: Path, key: str) -> InstallRecord:
    """The install record of ``key``; a clear error telling how to fetch it otherwise."""
    record = read_marker(data_dir, key)
    if record is None:
        msg = (
            f"dataset {key!r} is not installed in {data_dir}; "
            f"run: iad datasets fetch {key} --data-dir {data_dir}"
        )
        raise DatasetNotInstalledError(msg)
    return record
