"""Downloads against a server whose file changes between attempts, and one that trickles.

A resume must never splice two versions of a file: the loopback server changes its body
(and so its ``ETag``) between two attempts, and the download must restart from zero. A server
that sends one byte every fraction of a second never trips the read timeout; the attempt's
total deadline must cut it off and the next attempt resume.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from iad_pipeline.datasets.download import DownloadSettings, download
from iad_pipeline.errors import DownloadError, IadError

SIZE = 200_000
OLD = random.Random(1).randbytes(SIZE)
NEW = random.Random(2).randbytes(SIZE)
CUT = 100_001


def get(url: str, dest: Path, **kwargs):
    kwargs.setdefault("sha256", None)  # MVTec 3D-AD and MMAD publish none
    kwargs.setdefault("progress", False)
    kwargs.setdefault("sleep", lambda seconds: None)
    settings = DownloadSettings(timeout=kwargs.pop("timeout", DownloadSettings.timeout))
    if "retries" in kwargs:
        settings = settings.with_retries(kwargs.pop("retries"))
    kwargs["settings"] = settings
    return download(url, dest, **kwargs)


def test_a_file_changed_between_attempts_restarts_from_zero(server, tmp_path) -> None:
    url = server.add("/a.zip", OLD, drop_after=CUT)
    old_etag = server.route("/a.zip").etag_value()

    result = get(url, tmp_path / "a.zip", sleep=lambda s: server.replace("/a.zip", NEW))

    route = server.route("/a.zip")
    assert (tmp_path / "a.zip").read_bytes() == NEW  # not OLD[:CUT] + NEW[CUT:]
    assert route.ranges == [None, f"bytes={CUT}-"]
    assert route.if_ranges == [None, old_etag]
    assert route.statuses == [200, 200]  # the server's "changed" answer: the whole new file
    assert result.sha256 == hashlib.sha256(NEW).hexdigest() and result.resumed is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "a.zip.sha256"]


def test_a_file_changed_between_two_runs_restarts_from_zero(server, tmp_path) -> None:
    url = server.add("/a.zip", OLD, drop_after=CUT)
    with pytest.raises(DownloadError, match=f"{CUT} bytes are kept"):
        get(url, tmp_path / "a.zip", retries=0)
    record = json.loads((tmp_path / "a.zip.part.json").read_text())
    assert record["etag"] == server.route("/a.zip").etag_value()

    server.replace("/a.zip", NEW)
    get(url, tmp_path / "a.zip")

    assert (tmp_path / "a.zip").read_bytes() == NEW
    assert server.route("/a.zip").statuses == [200, 200]


def test_last_modified_is_the_validator_when_there_is_no_etag(server, tmp_path) -> None:
    url = server.add(
        "/a.zip", OLD, drop_after=CUT, etag=False, last_modified="Mon, 01 Dec 2025 10:00:00 GMT"
    )

    def change(seconds: float) -> None:
        server.replace("/a.zip", NEW)
        server.route("/a.zip").last_modified = "Tue, 02 Dec 2025 10:00:00 GMT"

    get(url, tmp_path / "a.zip", sleep=change)

    assert (tmp_path / "a.zip").read_bytes() == NEW
    assert server.route("/a.zip").if_ranges == [None, "Mon, 01 Dec 2025 10:00:00 GMT"]


def test_a_proxy_ignoring_if_range_is_caught_by_the_new_etag(server, tmp_path) -> None:
    url = server.add("/a.zip", OLD, drop_after=CUT, ignore_if_range=True)

    get(url, tmp_path / "a.zip", sleep=lambda s: server.replace("/a.zip", NEW))

    route = server.route("/a.zip")
    assert (tmp_path / "a.zip").read_bytes() == NEW
    assert route.ranges == [None, f"bytes={CUT}-", None]  # 206 of the new file refused
    assert route.statuses == [200, 206, 200]


def test_an_unchanged_file_still_resumes_with_only_the_missing_bytes(server, tmp_path) -> None:
    url = server.add("/a.zip", OLD, drop_after=CUT)

    result = get(url, tmp_path / "a.zip")

    route = server.route("/a.zip")
    assert (tmp_path / "a.zip").read_bytes() == OLD
    assert route.statuses == [200, 206] and route.bytes_sent == SIZE
    assert route.if_ranges == [None, route.etag_value()] and result.resumed


def test_a_part_of_unknown_origin_without_a_digest_is_not_resumed(server, tmp_path) -> None:
    url = server.add("/a.zip", NEW)
    (tmp_path / "a.zip.part").write_bytes(OLD[:CUT])  # no record of which version it is

    get(url, tmp_path / "a.zip")

    assert (tmp_path / "a.zip").read_bytes() == NEW
    assert server.route("/a.zip").ranges == [None]


def test_a_part_of_another_url_is_not_resumed(server, tmp_path) -> None:
    old_url = server.add("/old.zip", OLD, drop_after=CUT)
    with pytest.raises(DownloadError):
        get(old_url, tmp_path / "a.zip", retries=0)
    new_url = server.add("/new.zip", NEW)

    get(new_url, tmp_path / "a.zip")

    assert (tmp_path / "a.zip").read_bytes() == NEW
    assert server.route("/new.zip").ranges == [None]


def test_a_trickling_server_is_cut_off_by_the_attempt_deadline(server, tmp_path, monkeypatch):
    # 40 bytes at one byte every 0.25 s: each read returns well within the 5 s read timeout,
    # so only a total deadline per attempt cuts the first attempt (after about 1 s).
    body = bytes(range(40))
    url = server.add("/slow.bin", body, trickle_seconds=0.25)
    monkeypatch.setenv("IAD_DOWNLOAD_DEADLINE", "1")
    sleeps: list[float] = []

    result = get(url, tmp_path / "slow.bin", timeout=5.0, sleep=sleeps.append)

    route = server.route("/slow.bin")
    assert (tmp_path / "slow.bin").read_bytes() == body
    assert len(sleeps) == 1 and result.resumed  # one cut attempt, then a resume
    first_cut = int(route.ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < first_cut < len(body)


def test_a_bad_deadline_setting_is_a_one_line_error(server, tmp_path, monkeypatch) -> None:
    url = server.add("/a.zip", OLD)
    monkeypatch.setenv("IAD_DOWNLOAD_DEADLINE", "soon")
    with pytest.raises(IadError, match=r"^IAD_DOWNLOAD_DEADLINE='soon': expected a positive"):
        get(url, tmp_path / "a.zip")
    assert server.requests_seen == 0
