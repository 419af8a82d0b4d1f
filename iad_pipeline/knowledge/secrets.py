"""Keeping secret values out of everything the pipeline writes or prints.

An endpoint may echo what it received (a debugging proxy quoting the ``Authorization``
header, a model asked to repeat its input): the key then arrives inside an *answer*, not only
inside an error. So every text that is cached, stored in a table, logged or printed goes
through a :class:`Scrubber` built from the secret values of the environment, and
:func:`scrub_logs` makes every log record (ours, openai's, httpx's) pass through it too.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
# Environment variables whose values are secrets: OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_...
SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Shorter values would redact ordinary words; no real key is this short.
MIN_SECRET_LENGTH = 8
_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=]+")


def secret_values(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of the environment's secret-named variables, longest first.

    >>> secret_values({"OPENAI_API_KEY": "sk-abcdefgh123", "HOME": "/root", "HF_TOKEN": "x"})
    ('sk-abcdefgh123',)
    """
    env = os.environ if env is None else env
    values = {
        value.strip()
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return tuple(sorted(values, key=len, reverse=True))


class Scrubber:
    """Replace secret values (and base64 image data) in texts.

    >>> scrub = Scrubber(["sk-abcdefgh123"])
    >>> scrub("you sent: Bearer sk-abcdefgh123 and data:image/png;base64,iVBORw0KGgo=")
    'you sent: Bearer [redacted] and data:image/...;base64,[image]'
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        text = _DATA_URL.sub("data:image/...;base64,[image]", text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:  # never show the values
        return f"Scrubber({len(self.secrets)} secrets)"


_installed: set[str] = set()
_lock = threading.Lock()


def scrub_logs(secrets: Iterable[str]) -> None:
    """Make every log record of this process free of ``secrets`` from now on.

    A log record factory formats the message, scrubs it and drops the arguments, so no
    handler, formatter or library logger can print a secret. Idempotent; each secret is
    added once.
    """
    new = {s for s in secrets if s} - _installed
    if not new:
        return
    with _lock:
        first = not _installed
        _installed.update(new)
        if not first:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: the logging module reports it
                return record
            scrubbed = Scrubber(sorted(_installed, key=len, reverse=True))(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
            if record.exc_info and record.exc_info[1] is not None:
                trace = logging.Formatter().formatException(record.exc_info)
                if any(s in trace for s in _installed):
                    record.exc_text, record.exc_info = Scrubber(_installed)(trace), None
            return record

        logging.setLogRecordFactory(factory)
