"""From an installed dataset folder to the samples and quarantine tables on disk."""

from __future__ import annotations

from pathlib import Path

from iad_pipeline.datasets.fetch import dataset_path, require_installed
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import SamplesResult, build_samples
from iad_pipeline.fsutil import write_parquet


def quarantine_path_for(samples_path: Path) -> Path:
    """``FILE.parquet`` -> ``FILE.quarantine.parquet``.

    >>> quarantine_path_for(Path("t/visa.parquet")).as_posix()
    't/visa.quarantine.parquet'
    """
    name = samples_path.name.removesuffix(".parquet")
    return samples_path.with_name(f"{name}.quarantine.parquet")


def read_samples(
    key: str, data_dir: Path, *, workers: int | None = None, progress: bool = False
) -> SamplesResult:
    """Scan ``<data_dir>/<key>`` with the dataset's layout reader and inspect every image."""
    spec = get_spec(key)
    require_installed(data_dir, key)
    # not resolved: a dataset linked with --from keeps its paths under the data dir
    root = dataset_path(data_dir, key).absolute()
    scan = spec.scan(root)
    return build_samples(
        scan, masks_required=spec.masks_required, workers=workers, progress=progress
    )


def write_samples(
    key: str,
    data_dir: Path,
    out: Path,
    *,
    workers: int | None = None,
    progress: bool = False,
    quarantine_out: Path | None = None,
) -> tuple[SamplesResult, tuple[Path, Path]]:
    """Build the tables and write them atomically to ``out`` and ``quarantine_out``.

    ``quarantine_out`` defaults to ``FILE.quarantine.parquet`` beside ``out``.
    """
    result = read_samples(key, data_dir, workers=workers, progress=progress)
    out = Path(out)
    qpath = Path(quarantine_out) if quarantine_out else quarantine_path_for(out)
    write_parquet(result.samples, out)
    write_parquet(result.quarantine, qpath)
    return result, (out, qpath)
