"""The bytes sent for each image: encoded once, their digests remembered across runs.

A request's images are encoded once for the cache key and reused for sending; images shared
by neighbouring requests are not encoded again (a small in-memory LRU), and the digest of what
would be sent is kept in the response cache by file stamp, so a warm re-run encodes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from iad_pipeline.knowledge.cache import ResponseCache, image_digest, source_stamp
from iad_pipeline.knowledge.images import png_bytes
from iad_pipeline.knowledge.results import ChatRequest

log = logging.getLogger(__name__)

ENCODED_IN_MEMORY = 32
"""Encoded images kept in memory."""

Image = tuple[str, bool, str | None]
"""An image as sent: its path, whether it is a mask, its file stamp (``None``: unknown)."""


class ImageEncoder:
    """PNG bytes and digests of the images of requests (thread-safe)."""

    def __init__(self, cache: ResponseCache, max_side: int) -> None:
        self.cache = cache
        self.max_side = max_side
        self._encoded: OrderedDict[Image, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def images(self, request: ChatRequest) -> list[Image]:
        """The request's images, masks marked, with their file stamps."""
        return [
            (p, p in request.masks, source_stamp(p, self.max_side, p in request.masks))
            for p in request.images
        ]

    def encode(self, path: str, mask: bool, stamp: str | None) -> bytes:
        """The PNG bytes sent for ``path`` (from a small in-memory LRU when possible)."""
        memo = (path, mask, stamp)
        with self._lock:
            if stamp is not None and memo in self._encoded:
                self._encoded.move_to_end(memo)
                return self._encoded[memo]
        png = png_bytes(path, self.max_side, mask=mask)
        with self._lock:
            self._encoded[memo] = png
            while len(self._encoded) > ENCODED_IN_MEMORY:
                self._encoded.popitem(last=False)
        return png

    def digest(self, path: str, mask: bool, stamp: str | None) -> str:
        """The digest of the bytes that would be sent, remembered across runs by file stamp."""
        known = self.cache.image_digest(stamp) if stamp else None
        if known is not None:
            return known
        digest = image_digest(self.encode(path, mask, stamp))
        if stamp is not None:
            try:
                self.cache.put_image_digest(stamp, digest)
            except OSError as exc:
                log.warning("%s: cannot remember the image digest (%s)", path, exc)
        return digest
