"""The on-disk response cache: one small JSON file per answered chat request.

The key is the sha256 of what decides the answer: provider name, model, prompt text and the
sha256 of every image's bytes exactly as sent (after downscaling), each part length-prefixed
so no two different requests can collide by concatenation. A file holds the answer text, the
token usage and when it was written; never the API key, headers or the images themselves.
Files are written atomically (:mod:`iad_pipeline.fsutil`), so concurrent workers and
interrupted runs never leave a half-written entry; an unreadable entry is a miss (logged),
never an error.

Encoding an image for sending costs 30 to 60 ms (decode, resize, PNG), far more than a cache
lookup, so the digest of the bytes sent is remembered too, by :func:`source_stamp` (the
sha256 of the file, the encoding settings and Pillow's version): a warm re-run encodes
nothing. A changed file gets a new stamp and is encoded again.

Layout: ``<root>/<key[:2]>/<key>.json`` and ``<root>/images/<stamp[:2]>/<stamp>.txt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import PIL

from iad_pipeline.fsutil import write_json, write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# Bump when images.py changes the bytes it produces for the same file and settings.
ENCODING_VERSION = 2


def image_digest(png: bytes) -> str:
    """sha256 hex digest of image bytes as sent.

    >>> image_digest(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(png).hexdigest()


def cache_key(provider: str, model: str, text: str, image_digests: Sequence[str] = ()) -> str:
    """sha256 hex digest over the provider, model, prompt text and image digests.

    ``image_digests`` are :func:`image_digest` s of the bytes sent, in order.

    >>> a = cache_key("openai", "gpt-4-turbo", "hi", [image_digest(b"png")])
    >>> a == cache_key("openai", "gpt-4-turbo", "hi", [image_digest(b"png")]), len(a)
    (True, 64)
    >>> a == cache_key("openai", "gpt-4-turbo", "hi", [image_digest(b"PNG")])
    False
    >>> cache_key("p", "m", "ab") == cache_key("p", "ma", "b")
    False
    """
    digest = hashlib.sha256(f"iad-knowledge-cache/{CACHE_VERSION}".encode())
    for part in (provider, model, text, *image_digests):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    digest.update(len(image_digests).to_bytes(8, "big"))
    return digest.hexdigest()


def source_stamp(path: str | Path, max_side: int, mask: bool) -> str | None:
    """A hex stamp of an image file's bytes and the encoding settings; ``None`` if unreadable.

    Hashing the file (about 1 ms per MB) is far cheaper than encoding it, and unlike a stamp
    from size and modification time it cannot miss a rewrite.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.png"
    >>> _ = p.write_bytes(b"x")
    >>> source_stamp(p, 512, False) == source_stamp(p, 512, False) != source_stamp(p, 256, False)
    True
    >>> source_stamp(p.with_name("missing.png"), 512, False) is None
    True
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    settings = f"|{max_side}|{mask}|{PIL.__version__}|{ENCODING_VERSION}"
    return hashlib.sha256((digest.hexdigest() + settings).encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """One cached answer: the text and the usage of the request that produced it."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """Answers by :func:`cache_key` under ``root`` (created on first write).

    >>> import tempfile
    >>> cache = ResponseCache(Path(tempfile.mkdtemp()))
    >>> key = cache_key("template", "m", "prompt")
    >>> cache.get(key) is None
    True
    >>> _ = cache.put(key, CachedAnswer("an answer", 12, 3))
    >>> cache.get(key)
    CachedAnswer(text='an answer', prompt_tokens=12, completion_tokens=3)
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The cached answer of ``key``, or ``None`` (missing or unreadable entry)."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable cache entry (%s); asking again", path, exc)
            return None
        text = entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(text, str) or not text.strip():
            log.warning("%s: cache entry without an answer text; asking again", path)
            return None
        return CachedAnswer(
            text, int(entry.get("prompt_tokens") or 0), int(entry.get("completion_tokens") or 0)
        )

    def image_digest(self, stamp: str) -> str | None:
        """The remembered digest of the bytes sent for a :func:`source_stamp`, or ``None``."""
        try:
            digest = (self.root / "images" / stamp[:2] / f"{stamp}.txt").read_text().strip()
        except OSError:
            return None
        return digest if len(digest) == 64 else None

    def put_image_digest(self, stamp: str, digest: str) -> None:
        """Remember the digest of the bytes sent for ``stamp``."""
        write_text(self.root / "images" / stamp[:2] / f"{stamp}.txt", digest + "\n")

    def put(self, key: str, answer: CachedAnswer) -> Path:
        """Write ``answer`` for ``key`` atomically; returns the file."""
        entry = {
            "version": CACHE_VERSION,
            "text": answer.text,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return write_json(self.path(key), entry)
