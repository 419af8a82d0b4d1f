"""Safety limits against hostile input and stuck servers, each overridable by one variable.

Every limit has its default here and nowhere else; the code that enforces it calls the
function, which reads the environment variable each time (so a test or a user can set it
for one run) and refuses a value that is not a positive number with a one-line error.

| variable | limit | default |
|---|---|---|
| ``IAD_MAX_IMAGE_PIXELS`` | pixels of one image (width x height) | 89,478,485 (Pillow's) |
| ``IAD_MAX_EXTRACT_BYTES`` | uncompressed bytes of one archive | 100 GiB |
| ``IAD_MAX_EXTRACT_RATIO`` | uncompressed size over archive size | 100 |
| ``IAD_DOWNLOAD_DEADLINE`` | seconds of one download attempt | 21,600 (6 h) |
| ``IAD_LLM_CALL_DEADLINE`` | seconds of one LLM request attempt, however slow | 300 |
| ``IAD_LLM_RETRY_DEADLINE`` | seconds of one request with all its retries | 900 |

>>> max_image_pixels({})
89478485
>>> max_extract_ratio({"IAD_MAX_EXTRACT_RATIO": "20"})
20.0
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from iad_pipeline.errors import IadError

MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's ``Image.MAX_IMAGE_PIXELS`` (its decompression-bomb warning threshold)."""
MAX_EXTRACT_BYTES = 100 * 1024**3
"""MMAD's ALL_DATA.zip holds about 28 GB, MVTec AD about 5 GB."""
MAX_EXTRACT_RATIO = 100.0
"""Image datasets barely compress (PNG and JPEG already are); a bomb expands 1000-fold."""
DOWNLOAD_DEADLINE = 6 * 3600.0
LLM_CALL_DEADLINE = 300.0
LLM_RETRY_DEADLINE = 900.0


def _number(name: str, default: float, env: Mapping[str, str] | None) -> float:
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"{name}={raw!r}: expected a positive number (unset it for the default {default:g})"
        raise IadError(msg)
    return value


def max_image_pixels(env: Mapping[str, str] | None = None) -> int:
    """Images with more pixels are quarantined (``image_too_large``), never decoded."""
    return int(_number("IAD_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS, env))


def max_extract_bytes(env: Mapping[str, str] | None = None) -> int:
    """An archive whose members add up to more is refused before anything is written."""
    return int(_number("IAD_MAX_EXTRACT_BYTES", MAX_EXTRACT_BYTES, env))


def max_extract_ratio(env: Mapping[str, str] | None = None) -> float:
    """An archive expanding more than this many times its size is refused before writing."""
    return _number("IAD_MAX_EXTRACT_RATIO", MAX_EXTRACT_RATIO, env)


def download_deadline(env: Mapping[str, str] | None = None) -> float:
    """Seconds one download attempt may take in total (it then resumes in a new attempt)."""
    return _number("IAD_DOWNLOAD_DEADLINE", DOWNLOAD_DEADLINE, env)


def llm_call_deadline(env: Mapping[str, str] | None = None) -> float:
    """Seconds one chat request attempt may take in total, however slowly bytes arrive."""
    return _number("IAD_LLM_CALL_DEADLINE", LLM_CALL_DEADLINE, env)


def llm_retry_deadline(env: Mapping[str, str] | None = None) -> float:
    """Seconds one chat request may take with all its retries and backoff sleeps."""
    return _number("IAD_LLM_RETRY_DEADLINE", LLM_RETRY_DEADLINE, env)
