"""Where the pipeline keeps its files.

Everything lives under one data root, ``$IAD_HOME`` (default ``./.iad``)::

    $IAD_HOME/data/<key>/            one folder per dataset (or a link to a user's folder)
    $IAD_HOME/data/<key>.complete    JSON marker: what was verified, from where, when
    $IAD_HOME/data/.downloads/       archives, kept after extraction for re-verification
    $IAD_HOME/synthetic/             synthetic datasets of the demo profile
    $IAD_HOME/tables/                parquet tables (samples, quarantine, ...)
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".iad"


def iad_home(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """The data root: ``$IAD_HOME`` if set, else ``./.iad``, as an absolute path."""
    env = os.environ if env is None else env
    return Path(env.get("IAD_HOME") or DEFAULT_HOME).expanduser().resolve()


def data_dir(home: Path | None = None) -> Path:
    """The folder that holds one sub-folder per dataset."""
    return (home or iad_home()) / "data"


def tables_dir(home: Path | None = None) -> Path:
    """The folder of the pipeline's parquet tables."""
    return (home or iad_home()) / "tables"


def synthetic_dir(home: Path | None = None) -> Path:
    """The folder of the demo profile's synthetic datasets and archives."""
    return (home or iad_home()) / "synthetic"


def profile_root(home: Path | None = None, profile: str | None = None) -> Path:
    """The root of a profile's files: ``$IAD_HOME/demo`` for ``demo``, else ``$IAD_HOME``.

    ``profile`` defaults to ``$IAD_PROFILE``, itself ``demo`` when unset.

    >>> profile_root(Path("/h"), "demo").as_posix(), profile_root(Path("/h"), "real").as_posix()
    ('/h/demo', '/h')
    """
    home = home or iad_home()
    profile = profile or os.environ.get("IAD_PROFILE") or "demo"
    return home / "demo" if profile == "demo" else home
