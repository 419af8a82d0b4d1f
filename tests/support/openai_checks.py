"""The checks the loopback OpenAI server makes of every request, as a strict server would.

A request breaking one raises :class:`CheckFailed` with the reason; the server answers it 400
and records the reason in the request's :class:`Seen`, so a test can assert none happened.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field

from PIL import Image

PNG_PREFIX = "data:image/png;base64,"


@dataclass
class Seen:
    """One request as the server saw it."""

    n: int
    headers: dict[str, str]
    body: dict | None
    prompt: str = ""
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)
    system: str | None = None
    status: int = 0
    reason: str = ""
    fault: str | None = None


class CheckFailed(ValueError):
    """A request that breaks the server's checks (answered 400)."""


@dataclass(frozen=True)
class Expected:
    """What the server accepts: the model, the API key (``None``: any) and the image side."""

    model: str
    api_key: str | None
    max_side: int


def decode_image(url: str) -> tuple[int, int]:
    """The size of the PNG in a ``data:`` URL."""
    if not url.startswith(PNG_PREFIX):
        msg = f"image url starts with {url[:30]!r}, expected {PNG_PREFIX!r}"
        raise CheckFailed(msg)
    try:
        data = base64.b64decode(url[len(PNG_PREFIX) :], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format != "PNG":
                msg = f"image is {image.format}, expected PNG"
                raise CheckFailed(msg)
            return image.size
    except (binascii.Error, OSError) as exc:
        msg = f"image does not decode: {exc}"
        raise CheckFailed(msg) from exc


def check_request(seen: Seen, expected: Expected) -> None:
    """Raise :class:`CheckFailed` unless the request is one a strict server accepts; fill in
    ``seen``'s system prompt, prompt text, image sizes and layout."""
    key = expected.api_key
    if key is not None and seen.headers.get("authorization") != f"Bearer {key}":
        msg = "missing or wrong Authorization header"
        raise CheckFailed(msg)
    body = seen.body
    if not isinstance(body, dict):
        msg = "body is not a JSON object"
        raise CheckFailed(msg)
    if body.get("model") != expected.model:
        msg = f"model {body.get('model')!r}, expected {expected.model!r}"
        raise CheckFailed(msg)
    message = _user_message(seen, body.get("messages"))
    content = message.get("content")
    if not isinstance(content, list) or not content:
        msg = "content must be a non-empty list of parts"
        raise CheckFailed(msg)
    _check_parts(seen, content, expected.max_side)


def _user_message(seen: Seen, messages: object) -> dict:
    """The one user message, after an optional system message (recorded in ``seen``)."""
    if isinstance(messages, list) and len(messages) == 2:
        system, *messages = messages
        if not isinstance(system, dict) or system.get("role") != "system":
            msg = "the first of two messages must have role 'system'"
            raise CheckFailed(msg)
        if not isinstance(system.get("content"), str):
            msg = "the system message's content must be a string"
            raise CheckFailed(msg)
        seen.system = system["content"]
    if not isinstance(messages, list) or len(messages) != 1:
        msg = "messages must be a list of one user message (after an optional system one)"
        raise CheckFailed(msg)
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        msg = "the message must have role 'user'"
        raise CheckFailed(msg)
    return message


def _check_parts(seen: Seen, content: list, max_side: int) -> None:
    """Text and image parts in any order, at least one text; images small enough PNGs."""
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            seen.layout.append("text")
            continue
        if kind != "image_url":
            msg = "every content part must be a text or an image_url part"
            raise CheckFailed(msg)
        size = decode_image(str((part.get("image_url") or {}).get("url", "")))
        if max(size) > max_side:
            msg = f"image is {size[0]}x{size[1]}, long side above {max_side}"
            raise CheckFailed(msg)
        seen.image_sizes.append(size)
        seen.layout.append("image")
    if not texts:
        msg = "the content holds no text part"
        raise CheckFailed(msg)
    seen.prompt = "".join(texts)
