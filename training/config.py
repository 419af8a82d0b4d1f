"""Training recipes: typed configuration loaded from ``training/recipes/*.yaml``.

A recipe names the model, the training set (a ``training_set`` partition), the rewards with
their weights and parameters, the difficulty-aware options, the adapter (LoRA / QLoRA), the
DeepSpeed stage and the ``GRPOConfig`` fields. Every key is checked: an unknown key, reward,
reward parameter or GRPOConfig field is an error naming the file. Each default lives here,
once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iad_pipeline.errors import IadError

RECIPES_DIR = Path(__file__).parent / "recipes"
DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"
TINY_MODEL = "tiny"  # the model name that builds the tiny offline Qwen2.5-VL


class RecipeError(IadError):
    """A recipe file that cannot be used."""


@dataclass(frozen=True)
class RewardSpec:
    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DifficultySpec:
    enabled: bool = False
    reweight: bool = True
    all_wrong_weight: float = 1.0
    resample_rounds: int = 3
    mask_unsolved: bool = False


@dataclass(frozen=True)
class PeftSpec:
    method: str = "none"  # none | lora | qlora
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ImageSpec:
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 28 * 28 * 1280


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    training_set: str
    rewards: tuple[RewardSpec, ...]
    description: str = ""
    difficulty: DifficultySpec = DifficultySpec()
    peft: PeftSpec = PeftSpec()
    image: ImageSpec = ImageSpec()
    deepspeed: str | None = None  # zero2 | zero3 | a json path
    max_train_samples: int | None = None
    grpo: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def deepspeed_config(self) -> str | None:
        """Path of the DeepSpeed json, or ``None``."""
        if self.deepspeed is None:
            return None
        named = DEEPSPEED_DIR / f"{self.deepspeed}.json"
        return str(named if named.is_file() else Path(self.deepspeed))


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping, found {type(data).__name__}"
        raise RecipeError(msg)
    unknown = set(data) - _fields(cls)
    if unknown:
        msg = (
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: "
            f"{', '.join(sorted(_fields(cls)))}"
        )
        raise RecipeError(msg)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def _grpo_fields() -> set[str]:
    from trl import GRPOConfig

    return _fields(GRPOConfig)


def _check_rewards(rewards: tuple[RewardSpec, ...], where: str) -> None:
    from training.rewards import get_reward

    if not rewards:
        msg = f"{where}: a recipe needs at least one reward"
        raise RecipeError(msg)
    for spec in rewards:
        try:
            get_reward(spec.name, **spec.params)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{where}: {exc}"
            raise RecipeError(msg) from exc


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load and validate a recipe by name (``training/recipes/<name>.yaml``) or path.

    >>> load_recipe("demo").model
    'tiny'
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        msg = f"{path}: no such recipe; built-in recipes: {names}"
        raise RecipeError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML ({exc})"
        raise RecipeError(msg) from exc
    where = str(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping at the top level"
        raise RecipeError(msg)
    unknown = set(data) - (_fields(Recipe) - {"source"})
    if unknown:
        msg = f"{where}: unknown key(s) {', '.join(sorted(unknown))}"
        raise RecipeError(msg)
    for required in ("name", "model", "training_set", "rewards"):
        if required not in data:
            msg = f"{where}: missing required key {required!r}"
            raise RecipeError(msg)
    rewards = tuple(
        _build(RewardSpec, r, f"{where}: rewards[{i}]") for i, r in enumerate(data["rewards"] or [])
    )
    grpo = data.get("grpo") or {}
    bad = set(grpo) - _grpo_fields()
    if bad:
        msg = f"{where}: grpo: not GRPOConfig fields: {', '.join(sorted(bad))}"
        raise RecipeError(msg)
    recipe = Recipe(
        name=data["name"],
        model=data["model"],
        training_set=data["training_set"],
        rewards=rewards,
        description=data.get("description", ""),
        difficulty=_build(DifficultySpec, data.get("difficulty") or {}, f"{where}: difficulty"),
        peft=_build(PeftSpec, data.get("peft") or {}, f"{where}: peft"),
        image=_build(ImageSpec, data.get("image") or {}, f"{where}: image"),
        deepspeed=data.get("deepspeed"),
        max_train_samples=data.get("max_train_samples"),
        grpo=dict(grpo),
        source=str(path),
    )
    from iad_pipeline.stages import TRAINING_SETS

    if recipe.training_set not in TRAINING_SETS:
        msg = (
            f"{where}: training_set {recipe.training_set!r} unknown; valid: "
            f"{', '.join(TRAINING_SETS)}"
        )
        raise RecipeError(msg)
    if recipe.peft.method not in ("none", "lora", "qlora"):
        msg = f"{where}: peft.method must be none, lora or qlora, found {recipe.peft.method!r}"
        raise RecipeError(msg)
    if (
        recipe.deepspeed is not None
        and recipe.deepspeed_config()
        and not Path(recipe.deepspeed_config()).is_file()
    ):
        msg = f"{where}: deepspeed {recipe.deepspeed!r} is neither zero2, zero3 nor a json file"
        raise RecipeError(msg)
    _check_rewards(recipe.rewards, where)
    group = recipe.grpo.get("num_generations")
    for spec in recipe.rewards:
        given = spec.params.get("num_generations")
        if given is not None and group is not None and given != group:
            msg = (
                f"{where}: reward {spec.name!r} has num_generations {given} but grpo "
                f"generates {group} per prompt; they must agree"
            )
            raise RecipeError(msg)
    return recipe


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in ``training/recipes``."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_training_sets() -> dict[str, str]:
    """``{recipe name: training set}`` of the built-in recipes, read without validation.

    Cheap (no TRL import), for the Dagster definitions that map recipes to training sets.
    """
    out: dict[str, str] = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = str(data.get("training_set", ""))
    return out
