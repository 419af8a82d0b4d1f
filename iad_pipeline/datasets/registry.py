"""The dataset registry: every dataset the pipeline can ingest, by key.

Specs are data. Each can be overridden, in increasing order of precedence, by:

1. a YAML config file, ``$IAD_DATASETS_CONFIG`` or ``$IAD_HOME/datasets.yaml``::

       mvtec_ad:
         url: https://new.example/mvtec_anomaly_detection.tar.xz
         sha256: cf4313b1...
       mvtec_3d:
         md5: d8bb2800...            # a published md5 instead of a sha256
       mmad:
         resources:                  # any resource by file name: url, sha256, md5
           mmad.json: {url: https://mirror.example/mmad.json, sha256: 7452a5dc...}
         mmad_source: emit           # MMAD only: install EMIT's corrected ALL_DATA (--from)

2. environment variables ``IAD_<KEY>_URL``, ``IAD_<KEY>_SHA256`` and ``IAD_<KEY>_MD5`` (e.g.
   ``IAD_MVTEC_AD_URL``) for the main archive, and ``IAD_<KEY>_<FILE>_URL`` (``_SHA256``,
   ``_MD5``) for any resource, ``<FILE>`` its file name in capitals with ``_`` for other
   characters (``IAD_MMAD_MMAD_JSON_URL``, ``IAD_MMAD_DOMAIN_KNOWLEDGE_JSON_SHA256``),
3. the command line (``iad datasets fetch KEY --url URL --sha256 HEX | --md5 HEX``), for the
   main archive.

Top-level ``url``/``sha256``/``md5`` apply to the dataset's main archive (its first
resource). A digest override replaces the resource's built-in digests (both kinds): it names
another release.
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
from iad_pipeline.datasets.digests import check_hex
from iad_pipeline.datasets.spec import DatasetSpec, Resource
from iad_pipeline.errors import IadError, LicenseNotAcceptedError, UnknownDatasetError
from iad_pipeline.paths import iad_home

SPECS: dict[str, DatasetSpec] = {
    m.SPEC.key: m.SPEC
    for m in (mvtec_ad, visa, mvtec_loco, goodsad, mpdd, mvtec_3d, dtd_synthetic, dagm, mmad)
}
# The registry and the catalog must list the same keys in the same order.
if tuple(SPECS) != DATASET_KEYS:  # pragma: no cover - a programming error caught at import
    raise RuntimeError(f"registry keys {tuple(SPECS)} differ from catalog {DATASET_KEYS}")

OVERRIDE_FIELDS = ("url", "sha256", "md5")
# options a dataset's YAML entry may set besides the overrides
OPTIONS = {"mmad": {"mmad_source": ("hf", "emit")}}


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
        spec = get_spec(key)
        allowed = {*OVERRIDE_FIELDS, "resources", *OPTIONS.get(key, {})}
        if not isinstance(fields, dict) or set(fields) - allowed:
            msg = f"{path}: {key} may only set {', '.join(sorted(allowed))}; found {fields!r}"
            raise IadError(msg)
        for option, values in OPTIONS.get(key, {}).items():
            if option in fields and fields[option] not in values:
                msg = f"{path}: {key}.{option} must be one of {', '.join(values)}"
                raise IadError(msg)
        names = {r.filename for r in spec.resources}
        for name, res in (fields.get("resources") or {}).items():
            if name not in names or not isinstance(res, dict) or set(res) - set(OVERRIDE_FIELDS):
                msg = (
                    f"{path}: {key}.resources may name {', '.join(sorted(names))}, each with "
                    f"{', '.join(OVERRIDE_FIELDS)}; found {name!r}: {res!r}"
                )
                raise IadError(msg)
    return data


def dataset_option(key: str, option: str, env: Mapping[str, str] | None = None) -> str | None:
    """An option of a dataset's YAML entry (e.g. ``mmad_source``), or ``None``."""
    env = os.environ if env is None else env
    value = env.get(f"IAD_{key.upper()}_{option.upper()}")
    if value:
        allowed = OPTIONS.get(key, {}).get(option, ())
        if value not in allowed:
            msg = f"IAD_{key.upper()}_{option.upper()} must be one of {', '.join(allowed)}"
            raise IadError(msg)
        return value
    return load_overrides(config_path(env)).get(key, {}).get(option)


def resolve_spec(
    key: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DatasetSpec:
    """The spec of ``key`` with overrides from config file, environment and arguments applied.

    >>> spec = resolve_spec("mmad", env={"IAD_MMAD_MMAD_JSON_URL": "https://m.example/m.json",
    ...                                  "IAD_DATASETS_CONFIG": "/nonexistent.yaml"})
    >>> [r.url for r in spec.resources][1]
    'https://m.example/m.json'
    """
    env = os.environ if env is None else env
    spec = get_spec(key)
    config = load_overrides(config_path(env)).get(key, {})
    resources = []
    for i, res in enumerate(spec.resources):
        chosen = dict((config.get("resources") or {}).get(res.filename, {}))
        if i == 0:
            chosen |= {f: config[f] for f in OVERRIDE_FIELDS if f in config}
        prefixes = [f"IAD_{key.upper()}_{res.env_name}_"] + (
            [f"IAD_{key.upper()}_"] if i == 0 else []
        )
        for prefix in reversed(prefixes):  # the specific name wins over the main-archive one
            for field in OVERRIDE_FIELDS:
                if env.get(prefix + field.upper()):
                    chosen[field] = env[prefix + field.upper()]
        if i == 0:
            chosen |= {f: v for f, v in (("url", url), ("sha256", sha256), ("md5", md5)) if v}
        resources.append(_override(res, chosen))
    if resources == list(spec.resources):
        return spec
    return dataclasses.replace(spec, resources=tuple(resources))


def _override(res: Resource, chosen: dict[str, str]) -> Resource:
    """``res`` with ``chosen`` applied; a new digest replaces both built-in digests."""
    if not chosen:
        return res
    if "sha256" in chosen or "md5" in chosen:
        res = dataclasses.replace(res, sha256=None, md5=None)
    for kind in ("sha256", "md5"):
        if kind in chosen:
            chosen[kind] = check_hex(str(chosen[kind]), kind)
    return dataclasses.replace(res, **chosen)


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
