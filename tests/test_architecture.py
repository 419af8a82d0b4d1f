"""The dependency rule of ARCHITECTURE.md, checked on every module's imports (STYLE habit 1).

    assets (orchestration) -> {core, training, eval};  training -> core;  eval -> core

The core is ``iad_pipeline/`` without ``definitions.py`` and ``resources.py``; those two and
``assets/`` are the orchestration layer, the only code that imports Dagster. Every import
statement counts, at module level or inside a function (a lazy import is still a
dependency), and so does ``importlib.import_module`` with a literal name. No module is
exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("iad_pipeline", "training", "eval", "assets")
ORCHESTRATION_MODULES = {"iad_pipeline.definitions", "iad_pipeline.resources"}
# The layers each layer may import (its own included).
ALLOWED = {
    "core": {"core"},
    "training": {"core", "training"},
    "eval": {"core", "eval"},
    "orchestration": {"core", "training", "eval", "orchestration"},
}
# dagster-pipes is tiny and has no Dagster in it: the training script reports through it,
# so a GPU node needs nothing else.
DAGSTER_ALLOWED = {
    "orchestration": {"dagster", "dagster_pipes", "dagster_ray"},
    "training": {"dagster_pipes"},
}
# Ray runs training and evaluation beyond one machine; these modules alone may import it
# (inside functions: importing them costs nothing without Ray), besides the orchestration.
RAY_MODULES = {"training.ray_train", "eval.backends.ray_backend"}


def module_name(path: Path) -> str:
    """``iad_pipeline/cli/__init__.py`` -> ``iad_pipeline.cli``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer of a first-party module name; ``None`` for third-party modules."""
    top = module.split(".")[0]
    if top == "assets" or any(
        module == m or module.startswith(m + ".") for m in ORCHESTRATION_MODULES
    ):
        return "orchestration"
    return {"iad_pipeline": "core", "training": "training", "eval": "eval"}.get(top)


def _parse(source: str) -> ast.AST:
    """``ast.parse``, once more after CPython 3.11's spurious "AST constructor recursion depth
    mismatch" (gh-106905: the depth counter is shared by every thread, so another thread
    building an AST at the same moment, e.g. one a previous test left running, trips it)."""
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports: ``import``/``from`` statements anywhere (relative ones
    resolved against ``module``) and ``importlib.import_module("literal")`` calls."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(_parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # `from training import grpo` imports the module training.grpo
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """What ``module`` imports against the rule, one line per offending import."""
    layer = layer_of(module)
    found = []
    for name in sorted(imports(source, module, is_package)):
        top = name.split(".")[0]
        target = layer_of(name)
        if target is not None and target not in ALLOWED[layer]:
            found.append(f"{module} ({layer}) imports {name} ({target})")
        if top.startswith("dagster") and top not in DAGSTER_ALLOWED.get(layer, set()):
            found.append(f"{module} ({layer}) imports {name}: only the orchestration may")
        ray = top == "ray" or top.startswith("ray_")
        if ray and layer != "orchestration" and module not in RAY_MODULES:
            found.append(f"{module} ({layer}) imports {name}: only {sorted(RAY_MODULES)} may")
    return found


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_imports_follow_the_dependency_rule(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # hand-written cases: (module, its source, whether the rule forbids it)
        ("iad_pipeline.cli", "def f():\n    from eval.pipeline import evaluate_set\n", 1),
        ("iad_pipeline.stages", "import training.config\n", 1),
        ("iad_pipeline.stages", "from iad_pipeline.resources import IadConfig\n", 1),
        ("iad_pipeline.x", "import importlib\nimportlib.import_module('training.grpo')\n", 1),
        ("iad_pipeline.x", "import dagster as dg\n", 1),
        ("eval.adapters", "def f():\n    from training.tiny_model import build\n", 1),
        ("eval.pipeline", "from training import grpo\n", 1),
        ("training.grpo", "from eval.scoring import score_mmad\n", 1),
        ("training.grpo", "from dagster_pipes import open_dagster_pipes\n", 0),
        ("training.sft", "from .grpo import x\n", 0),
        ("iad_pipeline.cli.data", "from ..stages import x\n", 0),
        ("iad_pipeline.cli.data", "from .. import stages\n", 0),
        ("eval.runner", "import ray\n", 1),
        ("eval.backends.ray_backend", "def f():\n    import ray\n", 0),
        ("assets.training", "from training.grpo import main\nimport dagster\n", 0),
        ("iad_pipeline.definitions", "from assets.ingest import samples\n", 0),
    ],
)
def test_the_rule_is_checked_as_stated(module: str, source: str, broken: int) -> None:
    assert bool(violations(source, module)) == bool(broken)


def test_every_module_belongs_to_a_layer() -> None:
    assert [p for p in _modules() if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("name", sorted(RAY_MODULES))
def test_ray_modules_import_ray_only_when_used(name: str) -> None:
    path = ROOT / (name.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert "ray" not in names
