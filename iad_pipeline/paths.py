"""Where the pipeline keeps its files: one :class:`Layout` owns every path.

Everything lives under one data root, ``$IAD_HOME`` (default ``./.iad``). A profile picks the
root of its files: ``demo`` (the default, ``$IAD_PROFILE``) uses ``$IAD_HOME/demo``, ``real``
uses ``$IAD_HOME`` itself. Under that root::

    data/<key>/                     one folder per dataset (or a link to a user's folder)
    data/<key>.complete             JSON marker: what was verified, from where, when
    data/.downloads/                archives, kept after extraction for re-verification
    synthetic/                      synthetic trees and archives (demo, ``iad datasets synth``)
    tables/<kind>/<key>.parquet     samples, annotations, questions, knowledge, ...
    tables/quarantine/<kind>/<key>.parquet
    tables/previews/<kind>/<key>.png
    tables/training_sets/<name>/    train, eval, leaks parquet and hf/ (a datasets.Dataset)
    runs/<recipe>/checkpoint-<n>/   training runs
    answers/                        the resumable answer store
    reports/<checkpoint>/<set>/     evaluation reports
    results.duckdb                  the evaluation warehouse
    cache/llm/                      the knowledge client's response cache
    cache/fingerprints/             checkpoint files' content digests

The CLI, the Dagster resource, ``training/grpo.py`` and the evaluation all build a
:class:`Layout`; no other code joins these paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from iad_pipeline.errors import IadError

DEFAULT_HOME = ".iad"
PROFILES = ("demo", "real")


def iad_home(env: Mapping[str, str] | None = None) -> Path:
    """The data root: ``$IAD_HOME`` if set, else ``./.iad``, as an absolute path."""
    env = os.environ if env is None else env
    return Path(env.get("IAD_HOME") or DEFAULT_HOME).expanduser().resolve()


@dataclass(frozen=True)
class Layout:
    """Every path the pipeline reads or writes, for one (home, profile).

    ``data_override`` replaces the data folder only (the CLI's ``--data-dir``).

    >>> lay = Layout(Path("/h"), "demo")
    >>> lay.root.as_posix(), lay.tables.as_posix(), Layout(Path("/h"), "real").data.as_posix()
    ('/h/demo', '/h/demo/tables', '/h/data')
    >>> lay.training_set_hf("emit").as_posix()
    '/h/demo/tables/training_sets/emit/hf'
    """

    home: Path
    profile: str = "demo"
    data_override: Path | None = None

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        profile: str | None = None,
        *,
        data_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Layout:
        """The layout of ``home`` (default ``$IAD_HOME``) and ``profile`` (``$IAD_PROFILE``)."""
        env = os.environ if env is None else env
        root = Path(home).expanduser().resolve() if home else iad_home(env)
        profile = profile or env.get("IAD_PROFILE") or "demo"
        if profile not in PROFILES:
            msg = (
                f"profile must be one of {', '.join(PROFILES)}, got {profile!r} "
                "(check --profile or IAD_PROFILE)"
            )
            raise IadError(msg)
        data = Path(data_dir).expanduser().resolve() if data_dir else None
        return cls(root, profile, data)

    @classmethod
    def of_data(cls, data_dir: str | Path) -> Layout:
        """The layout as code handed only a data folder sees it (its data paths are right).

        >>> Layout.of_data("/d").downloads.as_posix()
        '/d/.downloads'
        """
        return cls(Path(data_dir), data_override=Path(data_dir))

    @property
    def root(self) -> Path:
        """``$IAD_HOME/demo`` for the demo profile, else ``$IAD_HOME``."""
        return self.home / "demo" if self.profile == "demo" else self.home

    @property
    def data(self) -> Path:
        return self.data_override or self.root / "data"

    @property
    def downloads(self) -> Path:
        return self.data / ".downloads"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def answers(self) -> Path:
        return self.root / "answers"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def warehouse(self) -> Path:
        return self.root / "results.duckdb"

    @property
    def llm_cache(self) -> Path:
        return self.root / "cache" / "llm"

    @property
    def fingerprint_cache(self) -> Path:
        """Checkpoint files' digests, cached by (inode, size, mtime) across processes."""
        return self.root / "cache" / "fingerprints"

    def table(self, kind: str, key: str) -> Path:
        """``tables/<kind>/<key>.parquet``."""
        return self.tables / kind / f"{key}.parquet"

    def quarantine(self, kind: str, key: str) -> Path:
        """``tables/quarantine/<kind>/<key>.parquet``: one tree, so a glob reads one schema."""
        return self.tables / "quarantine" / kind / f"{key}.parquet"

    def preview(self, kind: str, key: str) -> Path:
        """``tables/previews/<kind>/<key>.png``."""
        return self.tables / "previews" / kind / f"{key}.png"

    def knowledge_json(self, key: str) -> Path:
        """``tables/knowledge/<key>.json``: MMAD's domain_knowledge.json shape."""
        return self.tables / "knowledge" / f"{key}.json"

    def text_sample_images(self, key: str) -> Path:
        return self.tables / "text_samples" / key

    def training_set(self, name: str) -> Path:
        """``tables/training_sets/<name>/``."""
        return self.tables / "training_sets" / name

    def training_set_hf(self, name: str) -> Path:
        """The training set's export for TRL: ``tables/training_sets/<name>/hf``."""
        return self.training_set(name) / "hf"

    def run(self, recipe: str) -> Path:
        """``runs/<recipe>``: a training run's checkpoints."""
        return self.runs / recipe

    def report(self, checkpoint: str, eval_set: str) -> Path:
        return self.reports / checkpoint / eval_set

    def mmad_root(self) -> Path:
        return self.data / "mmad"

    def within(self, path: Path) -> bool:
        """Whether ``path`` lies under one of the layout's roots (home or data)."""
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(r.resolve()) for r in (self.home, self.data))
