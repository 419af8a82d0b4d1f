"""The dataset registry: every key, its licence gate, and URL/hash overrides."""

import pytest

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.registry import SPECS, check_licence, get_spec, resolve_spec
from iad_pipeline.errors import IadError, LicenseNotAcceptedError, UnknownDatasetError

NC = ["mvtec_ad", "mvtec_loco", "mpdd", "mvtec_3d", "mmad"]


def test_registry_holds_the_nine_datasets_in_order() -> None:
    assert tuple(SPECS) == DATASET_KEYS
    assert len(SPECS) == 9


@pytest.mark.parametrize(
    ("key", "manual", "licence_fragment"),
    [
        ("mvtec_ad", False, "CC BY-NC-SA 4.0"),
        ("visa", False, "CC BY 4.0"),
        ("mvtec_loco", False, "CC BY-NC-SA 4.0"),
        ("goodsad", True, "GPL-3.0"),
        ("mpdd", True, "CC BY-NC-SA 4.0"),
        ("mvtec_3d", False, "CC BY-NC-SA 4.0"),
        ("dtd_synthetic", True, "unstated"),
        ("dagm", True, "research use"),
        ("mmad", False, "CC BY-NC-SA 4.0"),
    ],
)
def test_spec_facts(key: str, manual: bool, licence_fragment: str) -> None:
    spec = get_spec(key)
    assert spec.manual is manual
    assert licence_fragment in spec.licence
    assert (spec.resources[0].url is None) is manual
    if manual:
        assert "--from" in spec.manual_instructions


def test_known_checksums_come_from_the_reference() -> None:
    assert get_spec("mvtec_ad").resources[0].sha256.startswith("cf4313b1")
    assert get_spec("visa").resources[0].sha256.startswith("2eb8690c")
    assert get_spec("mvtec_loco").resources[0].sha256.startswith("9e7c84db")
    assert get_spec("mmad").resources[1].sha256.startswith("7452a5dc")


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownDatasetError, match="valid keys: mvtec_ad, visa"):
        get_spec("mvtec")


@pytest.mark.parametrize("key", NC)
def test_non_commercial_licences_need_acceptance(key: str) -> None:
    spec = get_spec(key)
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        check_licence(spec, False, {})
    check_licence(spec, True, {})
    check_licence(spec, False, {"IAD_ACCEPT_LICENSES": "1"})


def test_visa_is_cc_by_and_needs_no_acceptance() -> None:
    check_licence(get_spec("visa"), False, {})


def test_overrides_precedence_config_then_env_then_arguments(tmp_path) -> None:
    config = tmp_path / "datasets.yaml"
    config.write_text("mvtec_ad:\n  url: http://config.example/a.tar.xz\n")
    env = {"IAD_DATASETS_CONFIG": str(config)}
    assert resolve_spec("mvtec_ad", env=env).resources[0].url == "http://config.example/a.tar.xz"
    env["IAD_MVTEC_AD_URL"] = "http://env.example/a.tar.xz"
    assert resolve_spec("mvtec_ad", env=env).resources[0].url == "http://env.example/a.tar.xz"
    spec = resolve_spec("mvtec_ad", url="http://cli.example/a.tar.xz", sha256="AB" * 32, env=env)
    assert spec.resources[0].url == "http://cli.example/a.tar.xz"
    assert spec.resources[0].sha256 == "ab" * 32
    # the built-in spec is left alone
    assert get_spec("mvtec_ad").resources[0].url.startswith("https://www.mydrive.ch/")


def test_url_override_keeps_the_known_hash(tmp_path) -> None:
    env = {"IAD_HOME": str(tmp_path), "IAD_MVTEC_AD_URL": "http://moved.example/x"}
    assert (
        resolve_spec("mvtec_ad", env=env).resources[0].sha256
        == get_spec("mvtec_ad").resources[0].sha256
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("mvtec_ad: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("nope:\n  url: x\n", "unknown dataset 'nope'"),
        ("visa:\n  mirror: x\n", "may only set md5, resources, sha256, url"),
    ],
)
def test_bad_config_files_are_named_in_the_error(tmp_path, content: str, message: str) -> None:
    config = tmp_path / "datasets.yaml"
    config.write_text(content)
    with pytest.raises(IadError, match=message):
        resolve_spec("visa", env={"IAD_DATASETS_CONFIG": str(config)})


def test_bad_sha256_is_rejected(tmp_path) -> None:
    with pytest.raises(IadError, match="64 hex digits"):
        resolve_spec("visa", sha256="xyz", env={"IAD_HOME": str(tmp_path)})
