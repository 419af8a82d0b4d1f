"""An archive's layout from its member list, checked before the long extraction.

Listing a zip reads only its central directory (seconds for MMAD's 28 GB ``ALL_DATA.zip``),
so a release packed differently (another wrapper folder, another tree) is reported right
after the download, before anything is written. Packing artefacts are tolerated the way the
extraction tolerates them: ``__MACOSX/`` (macOS resource forks) is ignored, and one wrapper
folder holding everything is looked through.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from iad_pipeline.errors import LayoutError

# folders an archiver adds beside the data (macOS Finder's resource forks)
PACKING_ARTEFACTS = frozenset({"__MACOSX"})


def top_level(members: list[str]) -> tuple[str | None, set[str]]:
    """``(wrapper, names)``: the single wrapper folder (or ``None``) and the names under it.

    >>> wrapper, names = top_level(["ALL_DATA/VisA/a.png", "ALL_DATA/x.json", "__MACOSX/._x"])
    >>> wrapper, sorted(names)
    ('ALL_DATA', ['VisA', 'x.json'])
    >>> wrapper, names = top_level(["VisA/a.png", "GoodsAD/b.png"])
    >>> wrapper, sorted(names)
    (None, ['GoodsAD', 'VisA'])
    """
    paths = [PurePosixPath(m.strip("/")) for m in members if m.strip("/")]
    paths = [p for p in paths if p.parts[0] not in PACKING_ARTEFACTS]
    first = {p.parts[0] for p in paths}
    wrapper = None
    if len(first) == 1 and all(len(p.parts) > 1 for p in paths if p.parts[0] in first):
        wrapper = next(iter(first))
        if any(len(p.parts) > 1 for p in paths):
            paths = [PurePosixPath(*p.parts[1:]) for p in paths if len(p.parts) > 1]
            first = {p.parts[0] for p in paths}
    return wrapper, first


def check_members(archive: Path, members: list[str], expected: tuple[str, ...], what: str) -> None:
    """Refuse an archive whose top level (past one wrapper) holds none of ``expected``."""
    wrapper, names = top_level(members)
    if names & set(expected):
        return
    where = f"{wrapper}/" if wrapper else "its top level"
    shown = ", ".join(sorted(names)[:8]) or "nothing"
    msg = (
        f"{archive}: not a {what} archive: {where} holds {shown}; expected one of "
        f"{', '.join(e + '/' for e in expected)} (nothing was extracted; pass --from a folder "
        "you unpacked, or --url another release)"
    )
    raise LayoutError(msg)
