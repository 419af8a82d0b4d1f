"""The payload and the call of the download tests (``test_download*.py``): 300 kB of seeded
random bytes, and :func:`fetch`, which records backoff sleeps instead of sleeping."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

from iad_pipeline.datasets.download import DownloadResult, DownloadSettings, download

SIZE = 300_000
DATA = random.Random(7).randbytes(SIZE)
DIGEST = hashlib.sha256(DATA).hexdigest()


def fetch(url: str, dest: Path, sleeps: list[float], **kwargs) -> DownloadResult:
    kwargs.setdefault("sha256", DIGEST)
    kwargs.setdefault("progress", False)
    return download(url, dest, sleep=sleeps.append, **settings(kwargs))


def settings(kwargs: dict) -> dict:
    """``retries``, ``backoff`` and ``timeout`` keywords as :class:`DownloadSettings`."""
    base = DownloadSettings()
    retry = {k: kwargs.pop(k) for k in ("retries", "backoff") if k in kwargs}
    timeout = {"timeout": kwargs.pop("timeout")} if "timeout" in kwargs else {}
    chosen = dataclasses.replace(base, retry=dataclasses.replace(base.retry, **retry), **timeout)
    return {**kwargs, "settings": chosen}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())
