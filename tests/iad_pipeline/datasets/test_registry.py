"""The dataset registry: every key, its licence gate, and URL/hash overrides."""

import pytest

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.registry import SPECS, check_licence, get_spec, resolve_spec
from iad_pipeline.errors import IadError, LicenseNotAcceptedError, UnknownDatasetError


def test_registry_holds_the_nine_datasets_in_order() -> None:
    assert tuple(SPECS) == DATASET_KEYS
    assert len(SPECS) == 9


@pytest.mark.parametrize(
    ("key", "manual"),
    [
        ("mvtec_ad", False),
        ("visa", False),
        ("mvtec_loco", False),
        ("goodsad", True),
        ("mpdd", True),
        ("mvtec_3d", False),
        ("dtd_synthetic", True),
        ("dagm", True),
        ("mmad", False),
    ],
)
def test_spec_facts(key: str, manual: bool) -> None:
    spec = get_spec(key)
    assert spec.manual is manual
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


# key -> the licence as the authors state it, and whether a download needs acceptance.
# Sources (the dataset research notes): MVTec AD, LOCO and 3D-AD: mvtec.com terms; VisA: the
# spot-diff repository's LICENSE-DATASET (anomalib's docstring wrongly says NC); MPDD: its
# repository's LICENSE; GoodsAD: the repository's GPL-3.0, no data licence stated; MMAD: the
# Hugging Face card. Only an open licence (CC BY) downloads without acceptance.
LICENCES = [
    ("mvtec_ad", "CC BY-NC-SA 4.0", True),
    ("visa", "CC BY 4.0", False),
    ("mvtec_loco", "CC BY-NC-SA 4.0", True),
    ("goodsad", "GPL-3.0 (repository; no separate data licence stated)", True),
    ("mpdd", "CC BY-NC-SA 4.0", True),
    ("mvtec_3d", "CC BY-NC-SA 4.0", True),
    ("dtd_synthetic", "unstated (derived from DTD; research use)", True),
    ("dagm", "research use (HCI Heidelberg terms; unverified)", True),
    ("mmad", "CC BY-NC-SA 4.0 (images keep their source licences)", True),
]


def test_the_licence_table_covers_every_dataset() -> None:
    assert [key for key, _, _ in LICENCES] == list(DATASET_KEYS)


@pytest.mark.parametrize(("key", "licence", "gated"), LICENCES, ids=[k for k, _, _ in LICENCES])
def test_licence_and_its_gate(key: str, licence: str, gated: bool) -> None:
    spec = get_spec(key)
    assert spec.licence == licence
    assert spec.needs_acceptance is gated
    if gated:
        with pytest.raises(LicenseNotAcceptedError) as info:
            check_licence(spec, False, {"IAD_ACCEPT_LICENSES": "0"})
        # the refusal names the licence and where to read its terms, and how to accept
        assert str(info.value) == (
            f"{spec.name} is licensed {licence} ({spec.homepage}); read the terms, then "
            "pass --accept-license or set IAD_ACCEPT_LICENSES=1"
        )
        check_licence(spec, True, {})
        for value in ("1", "true", "YES"):
            check_licence(spec, False, {"IAD_ACCEPT_LICENSES": value})
    else:
        check_licence(spec, False, {})  # an open licence needs no acceptance


def test_a_non_commercial_licence_is_always_gated() -> None:
    non_commercial = [key for key, spec in SPECS.items() if "NC" in spec.licence.split("-")]
    assert non_commercial == ["mvtec_ad", "mvtec_loco", "mpdd", "mvtec_3d", "mmad"]
    assert all(SPECS[key].needs_acceptance for key in non_commercial)


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
