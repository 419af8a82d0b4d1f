"""The dataset registry: every dataset the pipeline can ingest, by key.

Specs are data. Each can be overridden, in increasing order of precedence, by:

1. a YAML config file, ``$IAD_DATASETS_CONFIG`` or ``$IAD_HOME/datasets.yaml``::

       mvtec_ad:
         url: https://new.example/mvtec_anomaly_detection.tar.xz
         sha256: cf4313b1...

2. environment variables ``IAD_<KEY>_URL`` and ``IAD_<KEY>_SHA256`` (e.g. ``IAD_MVTEC_AD_URL``),
3. the command line (``iad datasets fetch KEY --url URL --sha256 HEX``).

Overrides apply to the dataset's main archive (its first resource).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from iad_pipeline.datasets import (
    dagm,
    dtd_synthetic,
    goodsad,
    mmad,
    mpdd,
    mvtec_3d,
    mvtec_ad,
    mvtec_loco,
    visa,
)
from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.spec import DatasetSpec
from iad_pipeline.errors import IadError, LicenseNotAcceptedError, UnknownDatasetError
from iad_pipeline.paths import iad_home

SPECS: dict[str, DatasetSpec] = {
    m.SPEC.key: m.SPEC
    for m in (mvtec_ad, visa, mvtec_loco, goodsad, mpdd, mvtec_3d, dtd_synthetic, dagm, mmad)
}
# The registry and the catalog must list the same keys in the same order.
if tuple(SPECS) != DATASET_KEYS:  # pragma: no cover - a programming error caught at import
    raise RuntimeError(f"registry keys {tuple(SPECS)} differ from catalog {DATASET_KEYS}")

OVERRIDE_FIELDS = ("url", "sha256")


def get_spec(key: str) -> DatasetSpec:
    """The built-in spec of ``key``.

    >>> get_spec("visa").licence
    'CC BY 4.0'
    >>> get_spec("nope")
    Traceback (most recent call last):
    ...
    iad_pipeline.errors.UnknownDatasetError: unknown dataset 'nope'; valid keys: mvtec_ad, ...
    """
    try:
        return SPECS[key]
    except KeyError:
        msg = f"unknown dataset {key!r}; valid keys: {', '.join(SPECS)}"
        raise UnknownDatasetError(msg) from None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the YAML overrides are read from."""
    env = os.environ if env is None else env
    explicit = env.get("IAD_DATASETS_CONFIG")
    return Path(explicit) if explicit else iad_home(dict(env)) / "datasets.yaml"


def load_overrides(path: Path) -> dict[str, dict[str, str]]:
    """Read and validate the YAML overrides file (absent file: no overrides)."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML ({exc})"
        raise IadError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path}: expected a mapping of dataset keys, found {type(data).__name__}"
        raise IadError(msg)
    for key, fields in data.items():
        get_spec(key)
        if not isinstance(fields, dict) or set(fields) - set(OVERRIDE_FIELDS):
            msg = f"{path}: {key} may only set {', '.join(OVERRIDE_FIELDS)}; found {fields!r}"
            raise IadError(msg)
    return data


def resolve_spec(
    key: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DatasetSpec:
    """The spec of ``key`` with overrides from config file, environment and arguments applied."""
    env = os.environ if env is None else env
    spec = get_spec(key)
    chosen = dict(load_overrides(config_path(env)).get(key, {}))
    for field in OVERRIDE_FIELDS:
        value = env.get(f"IAD_{key.upper()}_{field.upper()}")
        if value:
            chosen[field] = value
    if url:
        chosen["url"] = url
    if sha256:
        chosen["sha256"] = sha256
    if not chosen:
        return spec
    if "sha256" in chosen:
        chosen["sha256"] = _check_hex(chosen["sha256"])
    main = dataclasses.replace(spec.resources[0], **chosen)
    return dataclasses.replace(spec, resources=(main, *spec.resources[1:]))


def _check_hex(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        msg = f"sha256 must be 64 hex digits, got {value!r}"
        raise IadError(msg)
    return value


def licence_accepted(accept: bool, env: Mapping[str, str]) -> bool:
    return accept or env.get("IAD_ACCEPT_LICENSES", "").strip().lower() in ("1", "true", "yes")


def check_licence(spec: DatasetSpec, accept: bool, env: Mapping[str, str]) -> None:
    """Refuse a dataset whose licence needs acceptance unless the user accepted it."""
    if spec.needs_acceptance and not licence_accepted(accept, env):
        msg = (
            f"{spec.name} is licensed {spec.licence} ({spec.homepage}); read the terms, then "
            "pass --accept-license or set IAD_ACCEPT_LICENSES=1"
        )
        raise LicenseNotAcceptedError(msg)
