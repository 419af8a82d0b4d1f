"""MMAD: a multimodal benchmark of 39,672 multiple-choice questions on 8,366 IAD images.

Reference: Jiang et al., "MMAD: A Comprehensive Benchmark for Multimodal Large Language
Models in Industrial Anomaly Detection", ICLR 2025. https://github.com/jam-cc/MMAD and the
Hugging Face dataset ``jiang-cc/MMAD``. Licence: CC BY-NC-SA 4.0 (acceptance required);
images keep their source datasets' licences.

Layout (ALL_DATA.zip plus two json files at the root): ``mmad.json`` maps each query image
path (relative to the root, e.g. ``DS-MVTec/bottle/image/broken_large/000.png``) to its
conversation, ``mask_path`` (relative to ``<source>/<category>/``; a folder for LOCO) and
template lists; ``domain_knowledge.json`` holds per-category texts. The samples table has one
row per key of mmad.json, split ``test``, ``source`` the query set (DS-MVTec, MVTec-LOCO,
VisA, GoodsAD). Masks are optional here: a listed mask that is missing is reported, and the
image is kept, because MMAD's questions do not need masks.

``mask_path`` takes the forms MMAD's own loaders accept, each resolved to real files and
counted in the log (never dropped silently): a file; a folder without extension (MVTec LOCO's
one-mask-per-region folders, every image inside); and a ``.jpg`` name standing for the
``.png`` mask on disk.

Installation: ``ALL_DATA.zip`` (the images; it holds neither json file) plus ``mmad.json``
and ``domain_knowledge.json`` as separate resources, each overridable (URL and digest per
resource, see :mod:`iad_pipeline.datasets.registry`). The zip may wrap everything in one
folder and carry ``__MACOSX/``; its member list is checked for the query-set folders right
after the download, before the long extraction. ``mmad_source: emit`` (YAML option, or
``IAD_MMAD_MMAD_SOURCE=emit``) installs EMIT's corrected ALL_DATA
(https://github.com/guanwei49/EMIT) from the folder or archive given with ``--from``; the
marker records the variant.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, categories
from iad_pipeline.datasets.layout import Candidate, LayoutScan, Reason, is_image
from iad_pipeline.datasets.spec import DatasetSpec, Resource
from iad_pipeline.errors import LayoutError

log = logging.getLogger(__name__)

KEY = "mmad"
SOURCES = ("DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD")
EMIT_URL = "https://github.com/guanwei49/EMIT"
HF = "https://huggingface.co/datasets/jiang-cc/MMAD/resolve"
ZIP_URL = f"{HF}/refs%2Fpr%2F1/ALL_DATA.zip?download=true"
MMAD_JSON_URL = f"{HF}/main/mmad.json"
MMAD_JSON_SHA256 = "7452a5dc452325735ad68f19cdaf25369e0127e32cd21f6d53be195e8242720a"
KNOWLEDGE_URL = f"{HF}/main/domain_knowledge.json"
MMAD_JSON = "mmad.json"
KNOWLEDGE_JSON = "domain_knowledge.json"


def _unsafe(rel: object) -> str:
    """Why a path of mmad.json could leave the data root ('' if it cannot).

    >>> _unsafe("DS-MVTec/bottle/image/good/000.png"), _unsafe("/etc/passwd")
    ('', 'is an absolute path')
    >>> _unsafe("VisA/../../secret.png"), _unsafe("C:/x.png")
    ("has a '..' component", 'is an absolute path')
    """
    if not isinstance(rel, str):
        return ""
    if rel.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", rel):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", rel):
        return "has a '..' component"
    return ""


def _check_paths(path: Path, data: dict) -> None:
    """Refuse keys, ``mask_path`` and templates that could point outside the data root."""
    for key, entry in data.items():
        named = [("key", key)]
        if isinstance(entry, dict):
            named.append(("mask_path", entry.get("mask_path")))
            for field in ("similar_templates", "random_templates"):
                values = entry.get(field)
                named += [(field, v) for v in values] if isinstance(values, list) else []
        for what, rel in named:
            why = _unsafe(rel)
            if why:
                where = "" if what == "key" else f" (entry {key!r})"
                msg = (
                    f"{path}: {what} {rel!r}{where} {why}; mmad.json paths must be relative to "
                    "the data root and stay inside it. Download mmad.json again "
                    "(iad datasets fetch mmad) or fix the entry"
                )
                raise LayoutError(msg)


def load_mmad_json(path: Path) -> dict:
    """Parse an mmad.json file; a clear error if it is missing or not a json object.

    Every key, ``mask_path`` and template path must be relative and free of ``..``: none
    may be read outside the data root.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block, a device never end
        msg = f"{path}: not a regular file (a FIFO, device or folder); expected MMAD's mmad.json"
        raise LayoutError(msg)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        msg = f"{path}: not found; expected MMAD's mmad.json (iad datasets fetch mmad)"
        raise LayoutError(msg) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path}: not valid json ({exc}); download it again with iad datasets fetch mmad"
        raise LayoutError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path}: expected a json object keyed by image path, found {type(data).__name__}"
        raise LayoutError(msg)
    _check_paths(path, data)
    return data


def scan(root: Path) -> LayoutScan:
    """One candidate per key of mmad.json."""
    out = LayoutScan(KEY, root)
    forms: Counter[str] = Counter()
    for key, entry in load_mmad_json(root / MMAD_JSON).items():
        parts = key.split("/")
        if ".." in parts or key.startswith("/") or "\\" in key:
            out.problem(
                f"{root / MMAD_JSON}#{key}",
                Reason.BAD_MANIFEST_ROW,
                "key leaves the MMAD folder (absolute, '..' or a backslash); not read",
            )
            continue
        if len(parts) < 4 or not isinstance(entry, dict) or not is_image(key):
            out.problem(
                f"{root / MMAD_JSON}#{key}",
                Reason.BAD_MANIFEST_ROW,
                "expected <source>/<category>/.../<image> mapped to an object",
            )
            continue
        source, category = parts[0], parts[1]
        # DS-MVTec: <cat>/image/<label>/x.png; the others: <cat>/test/<label>/x.png
        label = parts[-2]
        image = root / key
        sid = f"{KEY}/{category}/test/{label}/{image.stem}"
        if not image.is_file():
            out.problem(image, Reason.MISSING_IMAGE, "listed in mmad.json but not on disk", sid)
            continue
        masks = _masks(out, root / source / category, entry.get("mask_path") or "", sid, forms)
        out.candidates.append(
            Candidate(KEY, category, "test", label, image, masks, source=source, root=root)
        )
    if forms:
        log.info(
            "mmad.json mask_path forms resolved: %s",
            ", ".join(f"{n} {form}" for form, n in sorted(forms.items())),
        )
    return out


def resolve_mask_path(class_dir: Path, mask_path: str) -> tuple[str, tuple[Path, ...]]:
    """``(form, files)`` of a ``mask_path`` of mmad.json, the ways MMAD's loaders read it.

    ``form`` is ``file``, ``folder`` (LOCO: every mask image inside), ``jpg_as_png`` (a
    ``.jpg`` name whose mask is the ``.png`` beside it) or ``missing``.
    """
    path = class_dir / mask_path
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.is_file() and is_image(p.name)))
        return ("folder", files) if files else ("missing", ())
    if path.is_file():
        return "file", (path,)
    if path.suffix.lower() in (".jpg", ".jpeg") and path.with_suffix(".png").is_file():
        return "jpg_as_png", (path.with_suffix(".png"),)
    return "missing", ()


def _masks(
    out: LayoutScan, class_dir: Path, mask_path: str, sid: str, forms: Counter[str]
) -> tuple[Path, ...]:
    if not mask_path:
        return ()
    if ".." in mask_path.replace("\\", "/").split("/") or mask_path.startswith("/"):
        out.problem(
            class_dir / mask_path,
            Reason.BAD_MANIFEST_ROW,
            "mask_path leaves the category folder ('..' or absolute); not read (image kept)",
            sid,
        )
        return ()
    form, files = resolve_mask_path(class_dir, mask_path)
    if form == "missing":
        out.problem(
            class_dir / mask_path,
            Reason.MISSING_MASK,
            "mask_path of mmad.json not on disk (image kept)",
            sid,
        )
        return ()
    forms[form] += 1
    return files


def required(root: Path) -> list[str]:
    """mmad.json must be at the root, with at least one of the four query-set folders."""
    missing = [name for name in (MMAD_JSON, KNOWLEDGE_JSON) if not (root / name).is_file()]
    if not any((root / s).is_dir() for s in SOURCES):
        missing.append(f"one of {', '.join(s + '/' for s in SOURCES)}")
    return missing


SPEC = DatasetSpec(
    key=KEY,
    name="MMAD",
    licence="CC BY-NC-SA 4.0 (images keep their source licences)",
    needs_acceptance=True,
    manual=False,
    size="unknown (mmad.json 30.4 MB)",
    homepage="https://huggingface.co/datasets/jiang-cc/MMAD",
    resources=(
        Resource(ARCHIVE_NAMES[KEY], ZIP_URL, None),
        Resource(MMAD_JSON, MMAD_JSON_URL, MMAD_JSON_SHA256, extract=False),
        Resource(KNOWLEDGE_JSON, KNOWLEDGE_URL, None, extract=False),
    ),
    scan=scan,
    required=required,
    categories=categories(KEY),
    masks_required=False,
    notes="EMIT reports errors in some MMAD files; record the revision you downloaded "
    "(or install EMIT's corrected ALL_DATA with mmad_source: emit).",
    archive_folders=SOURCES,
)
