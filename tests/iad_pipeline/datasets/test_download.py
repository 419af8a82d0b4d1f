"""Behaviour of :func:`iad_pipeline.datasets.download.download` against a loopback server.

Every test talks HTTP to a real server on 127.0.0.1 that misbehaves on purpose (see
``tests/support/http_server.py``) and asserts what a user would see: the file on disk, the
exception and its message, and the bytes that crossed the wire. Backoff sleeps are recorded
instead of slept. The refusals (bad input, HTTP client errors, a full disk) are in
``test_download_refusals.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import random

import pytest

from iad_pipeline.datasets.download import DownloadResult, sha256_file
from iad_pipeline.errors import ChecksumMismatchError, DownloadError
from tests.support.downloads import DATA, DIGEST, SIZE, fetch, siblings


def test_fresh_download_writes_the_file_and_nothing_else(server, sleeps, tmp_path):
    url = server.add("/mvtec.tar.xz", DATA)
    dest = tmp_path / "downloads" / "mvtec.tar.xz"  # the folder is created

    result = fetch(url, dest, sleeps, progress=True)  # the bar stays quiet off a terminal

    assert result == DownloadResult(dest, DIGEST, SIZE, SIZE, reused=False, resumed=False)
    assert dest.read_bytes() == DATA
    assert siblings(dest.parent) == ["mvtec.tar.xz"]
    assert server.route("/mvtec.tar.xz").ranges == [None]
    assert sleeps == []


def test_uppercase_digest_is_accepted(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    assert fetch(url, tmp_path / "a.zip", sleeps, sha256=DIGEST.upper()).sha256 == DIGEST


def test_dropped_connection_resumes_with_only_the_missing_bytes(server, sleeps, tmp_path):
    url = server.add("/a.tar.gz", DATA, drop_after=100_001)
    dest = tmp_path / "a.tar.gz"

    result = fetch(url, dest, sleeps)

    route = server.route("/a.tar.gz")
    assert dest.read_bytes() == DATA
    assert route.bytes_sent == SIZE  # 100_001 + 199_999: nothing was sent twice
    assert route.ranges == [None, "bytes=100001-"]
    assert route.statuses == [200, 206]
    assert (result.resumed, result.bytes_transferred, result.reused) == (True, SIZE, False)
    assert len(sleeps) == 1
    assert siblings(tmp_path) == ["a.tar.gz"]


def test_part_left_by_an_earlier_run_is_resumed(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(DATA[:1234])

    result = fetch(url, dest, sleeps)

    assert dest.read_bytes() == DATA
    assert server.route("/a.zip").bytes_sent == SIZE - 1234
    assert (result.resumed, result.bytes_transferred) == (True, SIZE - 1234)


def test_one_server_error_then_success(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA, fail_first=1)

    result = fetch(url, tmp_path / "a.zip", sleeps, backoff=2.0)

    assert result.sha256 == DIGEST
    assert server.route("/a.zip").statuses == [500, 200]
    assert len(sleeps) == 1 and 0.0 <= sleeps[0] <= 2.0


def test_backoff_is_exponential_full_jitter_capped_at_60_s(server, sleeps, tmp_path, monkeypatch):
    # With the jitter pinned to its upper bound the delays are backoff * 2**n, capped at 60.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    url = server.add("/a.zip", DATA, fail_first=5)

    fetch(url, tmp_path / "a.zip", sleeps, backoff=10.0)

    assert sleeps == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_wrong_bytes_are_kept_as_corrupt_and_never_renamed_into_place(server, sleeps, tmp_path):
    other = b"<html>moved</html>" * 1000  # what the link serves today
    url = server.add("/a.zip", other)
    dest = tmp_path / "a.zip"

    with pytest.raises(ChecksumMismatchError) as info:
        fetch(url, dest, sleeps)

    corrupt = tmp_path / "a.zip.corrupt"
    actual = hashlib.sha256(other).hexdigest()
    message = str(info.value)
    for needle in (url, DIGEST, actual, str(corrupt), f"--sha256 {actual}"):
        assert needle in message
    assert not dest.exists()
    assert corrupt.read_bytes() == other
    assert siblings(tmp_path) == ["a.zip.corrupt"]


def test_server_without_range_support_restarts_from_zero(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA, drop_after=100_001, no_range=True)
    dest = tmp_path / "a.zip"

    result = fetch(url, dest, sleeps)

    route = server.route("/a.zip")
    assert dest.read_bytes() == DATA
    assert route.ranges == [None, "bytes=100001-"]  # asked, ignored
    assert route.statuses == [200, 200]
    assert route.bytes_sent == SIZE + 100_001
    assert (result.resumed, result.bytes_transferred) == (False, SIZE + 100_001)


def test_resume_answered_from_the_wrong_byte_restarts_from_zero(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA, range_shift=-10)  # a proxy that miscounts
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(DATA[:5000])

    result = fetch(url, dest, sleeps)

    route = server.route("/a.zip")
    assert dest.read_bytes() == DATA
    assert route.ranges == ["bytes=5000-", None]
    assert result.resumed is False
    assert sleeps == []  # a restart is not a failed attempt


def test_complete_part_is_finished_after_416(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(DATA)  # a crash after the body, before the rename

    result = fetch(url, dest, sleeps)

    assert dest.read_bytes() == DATA
    assert server.route("/a.zip").statuses == [416]
    assert server.route("/a.zip").bytes_sent == 0
    assert (result.bytes_transferred, result.resumed) == (0, True)


def test_bogus_part_is_discarded_after_416_and_downloaded_again(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(DATA + b"trailing junk")

    result = fetch(url, dest, sleeps)

    assert dest.read_bytes() == DATA
    assert server.route("/a.zip").statuses == [416, 200]
    assert server.route("/a.zip").bytes_sent == SIZE
    assert result.bytes_transferred == SIZE


def test_existing_file_with_the_right_hash_is_reused_without_requests(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    dest = tmp_path / "a.zip"
    dest.write_bytes(DATA)

    result = fetch(url, dest, sleeps)

    assert result == DownloadResult(dest, DIGEST, SIZE, 0, reused=True, resumed=False)
    assert server.requests_seen == 0


def test_truncated_existing_file_is_moved_aside_and_downloaded_again(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA)
    dest = tmp_path / "a.zip"
    dest.write_bytes(DATA[:1000])  # what anomalib would happily reuse
    (tmp_path / "a.zip.corrupt").write_bytes(b"an older corrupt copy")

    result = fetch(url, dest, sleeps)

    assert dest.read_bytes() == DATA
    assert (tmp_path / "a.zip.corrupt").read_bytes() == DATA[:1000]  # replaced the older one
    assert (result.reused, result.bytes_transferred) == (False, SIZE)


def test_without_a_digest_a_sidecar_records_the_hash_for_the_next_call(server, sleeps, tmp_path):
    url = server.add("/a.json", DATA)
    dest = tmp_path / "a.json"

    first = fetch(url, dest, sleeps, sha256=None)
    second = fetch(url, dest, sleeps, sha256=None)
    dest.write_bytes(DATA[:10])  # damaged since
    third = fetch(url, dest, sleeps, sha256=None)

    sidecar = (tmp_path / "a.json.sha256").read_text()
    assert sidecar == f"{DIGEST}  a.json\n"
    assert (first.reused, second.reused, third.reused) == (False, True, False)
    assert server.route("/a.json").requests == 2
    assert dest.read_bytes() == DATA


def test_without_a_digest_or_sidecar_an_existing_file_is_downloaded_again(server, sleeps, tmp_path):
    url = server.add("/a.json", DATA)
    dest = tmp_path / "a.json"
    dest.write_bytes(DATA)  # put there by someone else: nothing vouches for it

    result = fetch(url, dest, sleeps, sha256=None)

    assert (result.reused, server.route("/a.json").requests) == (False, 1)


def test_exhausted_retries_keep_the_part_and_a_rerun_resumes(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA, drop_after=20_000, drop_times=99)
    dest = tmp_path / "a.zip"
    part = tmp_path / "a.zip.part"

    with pytest.raises(DownloadError) as info:
        fetch(url, dest, sleeps, retries=2)

    message = str(info.value)
    assert "60000 bytes are kept in" in message and str(part) in message
    assert "re-running the same command resumes" in message
    assert part.read_bytes() == DATA[:60_000]  # three attempts of 20_000 bytes each
    assert len(sleeps) == 2
    assert not dest.exists()

    server.route("/a.zip").drop_after = None  # the network is back
    result = fetch(url, dest, sleeps)
    assert dest.read_bytes() == DATA
    assert server.route("/a.zip").bytes_sent == SIZE
    assert (result.resumed, result.bytes_transferred) == (True, SIZE - 60_000)


def test_stalled_body_times_out_and_resumes(server, sleeps, tmp_path):
    url = server.add("/a.zip", DATA, stall_after=50_000, stall_seconds=4.0)

    result = fetch(url, tmp_path / "a.zip", sleeps, timeout=1.0)

    assert result.sha256 == DIGEST
    assert server.route("/a.zip").ranges == [None, "bytes=50000-"]
    assert result.resumed is True


def test_content_encoding_is_not_undone_so_the_archive_is_stored_as_served(
    server, sleeps, tmp_path
):
    # Some hosts label a .tar.gz "Content-Encoding: gzip"; decoding it would store the tar
    # and fail the published hash.
    archive = gzip.compress(DATA[:50_000])
    url = server.add("/a.tar.gz", archive, headers={"Content-Encoding": "gzip"})

    result = fetch(url, tmp_path / "a.tar.gz", sleeps, sha256=hashlib.sha256(archive).hexdigest())

    assert (tmp_path / "a.tar.gz").read_bytes() == archive
    assert result.size == len(archive)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (DATA, DIGEST),
    ],
)
def test_sha256_file_matches_hashlib_for_any_chunk_size(tmp_path, data, expected):
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path) == sha256_file(path, chunk_size=7) == expected
