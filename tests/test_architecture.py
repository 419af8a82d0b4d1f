"""The domain core, training and eval never import Dagster (STYLE habit 1)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATION = {"iad_pipeline/definitions.py", "iad_pipeline/resources.py", "iad_pipeline/demo.py"}


def _core_modules() -> list[Path]:
    files = [p for pkg in ("iad_pipeline", "training", "eval") for p in (ROOT / pkg).rglob("*.py")]
    return [p for p in files if p.relative_to(ROOT).as_posix() not in ORCHESTRATION]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_module_does_not_import_dagster(path: Path) -> None:
    # dagster-pipes is the one exception: the training script reports through it, and it is
    # a tiny package without Dagster itself (so a GPU node needs nothing else).
    assert not {n for n in _imported(path) if n.startswith("dagster") and n != "dagster_pipes"}


def test_core_does_not_import_the_asset_layer() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix() for p in _core_modules() if "assets" in _imported(p)
    ]
    assert offenders == []


# Ray runs training and evaluation beyond one machine; these modules alone may import it
# (inside functions: importing them costs nothing without Ray), besides the asset layer.
RAY_MODULES = {"training/ray_train.py", "eval/backends/ray_backend.py"}


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_module_does_not_import_ray(path: Path) -> None:
    if path.relative_to(ROOT).as_posix() in RAY_MODULES:
        return
    assert not {n for n in _imported(path) if n == "ray" or n.startswith("ray_")}


@pytest.mark.parametrize("name", sorted(RAY_MODULES))
def test_ray_modules_import_ray_only_when_used(name: str) -> None:
    tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert "ray" not in names
