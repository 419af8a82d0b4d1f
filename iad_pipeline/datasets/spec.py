"""What the pipeline knows about one dataset: where it comes from, its licence, its layout.

URLs and hashes are data, not code: links move (MVTec's moved twice), so every spec can be
overridden from a config file, the environment and the command line (see
:func:`iad_pipeline.datasets.registry.resolve_spec`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iad_pipeline.datasets.layout import LayoutScan


@dataclass(frozen=True)
class Resource:
    """One file to download for a dataset.

    Attributes:
        filename: Name the file is saved under in ``<data-dir>/.downloads/``.
        url: Where to download it; ``None`` when only a manual download exists.
        sha256: Expected hex digest; ``None`` when no published checksum is known (the digest
            is then computed, recorded in the ``.complete`` marker and printed).
        extract: ``True`` for archives unpacked into the dataset folder, ``False`` for files
            copied as they are (MMAD's json files).
        md5: Expected md5, where that is what the source publishes (anomalib's MVTec 3D-AD
            entry); checked on the finished file. A resource may carry sha256, md5 or both.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    extract: bool = True
    md5: str | None = None

    @property
    def verified_with(self) -> str | None:
        """The digest that verifies this resource: ``sha256``, ``md5`` or ``None``."""
        return "sha256" if self.sha256 else "md5" if self.md5 else None

    @property
    def env_name(self) -> str:
        """The resource's part of its environment variables: ``mmad.json`` -> ``MMAD_JSON``."""
        return "".join(c if c.isalnum() else "_" for c in self.filename).upper()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the registry.

    Attributes:
        key: Registry key used everywhere (CLI, partitions, tables), e.g. ``mvtec_ad``.
        name: Human name, e.g. ``MVTec AD``.
        licence: Licence name as the authors state it.
        needs_acceptance: ``True`` when the licence is non-commercial or unclear, so a user
            must pass ``--accept-license`` or set ``IAD_ACCEPT_LICENSES=1``.
        manual: ``True`` when no direct download link exists; the user downloads it and
            passes ``--from PATH``.
        size: Approximate download size, for ``iad datasets list``.
        homepage: Where a user gets fresh links and reads the terms.
        resources: Files to download, the first being the main archive.
        scan: Layout reader: walks a dataset folder, returns candidates and problems.
        required: Paths that must exist in an installed dataset folder, relative to its root
            (used to verify a manual download and to say exactly what is missing).
        categories: Category names of the real dataset.
        masks_required: ``False`` where anomalous samples may lack masks (MMAD).
        notes: Caveats shown to users.
    """

    key: str
    name: str
    licence: str
    needs_acceptance: bool
    manual: bool
    size: str
    homepage: str
    resources: tuple[Resource, ...]
    scan: Callable[[Path], LayoutScan]
    required: Callable[[Path], list[str]]
    categories: tuple[str, ...] = ()
    masks_required: bool = True
    manual_instructions: str = ""
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # top-level folders the main archive must hold (past one wrapper folder and
    # __MACOSX/), checked on its member list before extraction; empty: no check
    archive_folders: tuple[str, ...] = ()

    @property
    def download_kind(self) -> str:
        """``manual`` or ``automatic``."""
        return "manual" if self.manual else "automatic"
