"""What :func:`iad_pipeline.datasets.download.download` refuses, and how it says so.

Bad input (a URL that is not http(s), a malformed digest), HTTP client errors (a moved link,
a forbidden file), a server that cannot be reached and a disk without room: each fails with
one message that names what was found and the fix, leaving nothing half-written behind
unless the message says where it is.
"""

from __future__ import annotations

import errno
import socket
import types

import pytest

from iad_pipeline.datasets import partfile as partfile_module
from iad_pipeline.errors import DownloadError, InsufficientDiskSpaceError, LinkMovedError
from tests.support.downloads import DATA, fetch, siblings


def test_malformed_digest_is_refused_before_any_request(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    with pytest.raises(DownloadError, match="not 64 hex digits"):
        fetch(url, tmp_path / "a.zip", sleeps, sha256="abc123")
    assert server.requests_seen == 0


@pytest.mark.parametrize("status", [404, 410])
def test_missing_link_raises_link_moved_with_the_fix(server, sleeps, tmp_path, status):
    url = server.add("/gone.tar.xz", DATA, status=status)
    dest = tmp_path / "gone.tar.xz"

    with pytest.raises(LinkMovedError) as info:
        fetch(url, dest, sleeps, hint="(or set IAD_MVTEC_AD_URL)")

    message = str(info.value)
    assert url in message and str(status) in message and "moved" in message
    assert "--url URL" in message
    assert message.endswith("(or set IAD_MVTEC_AD_URL)")
    assert server.route("/gone.tar.xz").requests == 1  # not retried
    assert siblings(tmp_path) == []  # no dest, no .part


def test_other_client_errors_raise_download_error_with_the_status(server, sleeps, tmp_path):
    url = server.add("/secret.zip", DATA, status=403)

    with pytest.raises(DownloadError, match="HTTP 403") as info:
        fetch(url, tmp_path / "secret.zip", sleeps)

    assert not isinstance(info.value, LinkMovedError)
    assert server.route("/secret.zip").requests == 1
    assert siblings(tmp_path) == []


def test_unreachable_server_fails_after_retries_saying_nothing_was_received(sleeps, tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(DownloadError, match=r"after 1 retries.*Nothing was received"):
        fetch(f"http://127.0.0.1:{port}/a.zip", tmp_path / "a.zip", sleeps, retries=1)
    assert siblings(tmp_path) == []


def test_not_enough_disk_space_is_refused_before_writing(server, sleeps, tmp_path, monkeypatch):
    url = server.add("/a.zip", DATA)
    fake_usage = types.SimpleNamespace(total=10**12, used=10**12, free=1024)
    monkeypatch.setattr(partfile_module.shutil, "disk_usage", lambda _: fake_usage)

    with pytest.raises(InsufficientDiskSpaceError) as info:
        fetch(url, tmp_path / "a.zip", sleeps)

    assert str(tmp_path) in str(info.value) and "free" in str(info.value)
    assert siblings(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.zip",  # another protocol
        "file:///etc/passwd",  # a local file
        "example.com/a.zip",  # no scheme
        "https:///a.zip",  # no host
        "",
    ],
)
def test_non_http_urls_are_rejected(sleeps, tmp_path, url):
    with pytest.raises(DownloadError, match="only http:// and https://") as info:
        fetch(url, tmp_path / "a.zip", sleeps)
    assert repr(url) in str(info.value)
    assert siblings(tmp_path) == []


def test_invalid_url_is_rejected_as_a_download_error(sleeps, tmp_path):
    with pytest.raises(DownloadError, match="not a valid URL"):
        fetch("http://[::1/a.zip", tmp_path / "a.zip", sleeps)


def test_disk_filling_up_mid_body_keeps_the_part_and_says_so(server, sleeps, tmp_path, monkeypatch):
    url = server.add("/a.zip", DATA)
    real_append = partfile_module.PartFile.append

    def append_then_fill_the_disk(self, chunks, on_chunk):
        real_append(self, iter([next(chunks)]), on_chunk)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(partfile_module.PartFile, "append", append_then_fill_the_disk)

    with pytest.raises(InsufficientDiskSpaceError, match="filled up") as info:
        fetch(url, tmp_path / "a.zip", sleeps)

    part = tmp_path / "a.zip.part"
    assert f"{part.stat().st_size} bytes are kept" in str(info.value)
    assert part.read_bytes() == DATA[: part.stat().st_size]
    assert sleeps == []  # not retried
