"""Training recipes: typed configuration loaded from ``training/recipes/*.yaml``.

A recipe names the model, the training set (a ``training_set`` partition), the stages run in
order (``sft`` then ``grpo``, or ``grpo`` alone), the rewards with their weights and
parameters, the difficulty-aware options, the adapter (LoRA / QLoRA), the DeepSpeed stage, the
``SFTConfig`` fields of the SFT stage and the ``GRPOConfig`` fields of the GRPO stage.

Every key is checked, with its type and range: an unknown key, reward, reward parameter or
trainer field, a value of the wrong type or out of range, an option that would be ignored
(``peft.r`` without an adapter, ``difficulty.*`` with difficulty off, an ``sft`` block without
an ``sft`` stage) or a path-like trainer field (outputs come from the command line, never from
the recipe) is a one-line error naming the file and the field. YAML is read safely, with a
size limit and a limit on what aliases expand to. Each default lives here, once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iad_pipeline.errors import IadError
from iad_pipeline.models.emit.settings import EmitModuleSettings, EmitSettingsError

RECIPES_DIR = Path(__file__).parent / "recipes"
DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"
TINY_MODEL = "tiny"  # the model name that builds the tiny offline Qwen2.5-VL
TINY_INTERNVL = "tiny-internvl3"  # the model name that builds the tiny offline InternVL3
STAGES = ("sft", "grpo")  # the order stages run in
MAX_RECIPE_BYTES = 256 * 1024
MAX_YAML_NODES = 20_000  # nodes after alias expansion: a recipe has a few hundred
MAX_YAML_DEPTH = 64
SFT_TRAINABLE = ("all", "adapter", "projector", "emit_module")
# Trainer fields a recipe may not set: paths and destinations come from the command line or
# the layout (a recipe's output_dir would put checkpoints where --resume and the sensor never
# look); the rest are set from other recipe keys.
FORBIDDEN_TRAINER_FIELDS = {
    "output_dir": "the output folder comes from --output (or the layout), never from a recipe",
    "logging_dir": "logs go under the output folder given by --output",
    "resume_from_checkpoint": "use --resume",
    "chat_template_path": "the chat template comes with the model's processor",
    "deepspeed": "set the top-level deepspeed key (zero2, zero3 or a json file)",
    "push_to_hub": "pushing to the Hub is not part of a recipe",
    "hub_model_id": "pushing to the Hub is not part of a recipe",
    "hub_token": "pushing to the Hub is not part of a recipe",
    "hub_strategy": "pushing to the Hub is not part of a recipe",
    "hub_private_repo": "pushing to the Hub is not part of a recipe",
    "hub_always_push": "pushing to the Hub is not part of a recipe",
    "hub_revision": "pushing to the Hub is not part of a recipe",
    "log_completions_hub_repo": "pushing to the Hub is not part of a recipe",
    "reward_weights": "set each reward's weight in rewards",
}
# Ranges of the common trainer fields: (lowest, lowest allowed?, highest or None).
TRAINER_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "learning_rate": (0.0, False, None),
    "num_generations": (2, True, None),
    "per_device_train_batch_size": (1, True, None),
    "gradient_accumulation_steps": (1, True, None),
    "max_steps": (1, True, None),
    "num_train_epochs": (0.0, False, None),
    "max_completion_length": (1, True, None),
    "max_length": (1, True, None),
    "temperature": (0.0, False, None),
    "top_p": (0.0, False, 1.0),
    "beta": (0.0, True, None),
    "save_steps": (0.0, False, None),
    "logging_steps": (0.0, False, None),
    "warmup_steps": (0.0, True, None),
    "warmup_ratio": (0.0, True, 1.0),
    "weight_decay": (0.0, True, None),
    "max_grad_norm": (0.0, True, None),
    "steps_per_generation": (1, True, None),
    "num_iterations": (1, True, None),
    "save_total_limit": (1, True, None),
}


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
class SftSpec:
    """The SFT stage: which parameters train, and its ``SFTConfig`` fields.

    ``trainable``: ``all`` (every weight; without peft), ``adapter`` (the LoRA adapter only;
    needs peft), ``projector`` (the vision-to-text merger; with peft, adapter plus merger), or
    a list of module-name prefixes (``[visual.merger, model.language_model.layers.1]``).
    Unset: ``adapter`` with peft, else ``all``.
    """

    trainable: str | tuple[str, ...] | None = None  # None: adapter with peft, else all
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    training_set: str
    rewards: tuple[RewardSpec, ...]
    description: str = ""
    stages: tuple[str, ...] = ("grpo",)
    sft: SftSpec = SftSpec()
    difficulty: DifficultySpec = DifficultySpec()
    peft: PeftSpec = PeftSpec()
    image: ImageSpec = ImageSpec()
    deepspeed: str | None = None  # zero2 | zero3 | a json path
    max_train_samples: int | None = None
    grpo: dict[str, Any] = field(default_factory=dict)
    # EMIT's soft prompt and heat-map contrastive embeddings (iad_pipeline.models.emit); off unless
    # a recipe enables it
    emit_module: EmitModuleSettings = field(
        default_factory=lambda: EmitModuleSettings(enabled=False)
    )
    source: str = ""

    def deepspeed_config(self) -> str | None:
        """Path of the DeepSpeed json, or ``None``."""
        if self.deepspeed is None:
            return None
        named = DEEPSPEED_DIR / f"{self.deepspeed}.json"
        return str(named if named.is_file() else self._relative(self.deepspeed))

    def _relative(self, value: str) -> Path:
        path = Path(value)
        if not path.is_absolute() and self.source:
            path = Path(self.source).parent / path
        return path


# -- YAML, read safely --------------------------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so no message grows with the input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` that checks the composed document's size (aliases expanded) and depth
    before any Python object is built."""

    def compose_document(self):
        node = super().compose_document()
        _check_nodes(node)
        return node


def _check_nodes(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            msg = f"nested deeper than {MAX_YAML_DEPTH} levels"
            raise RecipeError(msg)
        if id(node) in sizes:  # an alias: the anchored node again, as often as it is used
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key, depth + 1) + size(value, depth + 1)
                if total > MAX_YAML_NODES:
                    break
        if total > MAX_YAML_NODES:
            msg = f"expands to more than {MAX_YAML_NODES} values (aliases included)"
            raise RecipeError(msg)
        sizes[id(node)] = total
        return total

    size(root, 0)


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``, read safely with size, expansion and depth limits."""
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            msg = f"{path}: {size} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes"
            raise RecipeError(msg)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot be read ({type(exc).__name__})"
        raise RecipeError(msg) from exc
    try:
        return yaml.load(text, Loader=_RecipeLoader)
    except RecipeError as exc:
        msg = f"{path}: {exc}"
        raise RecipeError(msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        msg = f"{path}: not valid YAML{where} ({_short(problem, 80)})"
        raise RecipeError(msg) from None
    except RecursionError:
        msg = f"{path}: nested too deeply"
        raise RecipeError(msg) from None


# -- typed values -------------------------------------------------------------------------------


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@functools.cache
def _adapter(hint: Any):
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (pydantic's lax rules: ``"1e-5"`` is a float, ``"fast"`` is
    not), else a one-line error."""
    from pydantic import ValidationError

    try:
        return _adapter(hint).validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else "invalid"
        msg = f"{where}: {first.lower()}, found {_short(value)}"
        raise RecipeError(msg) from None


def _in_range(value: Any, low: float, inclusive: bool, high: float | None, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    below = value < low if inclusive else value <= low
    if below or (high is not None and value > high):
        bound = f">= {low}" if inclusive else f"> {low}"
        if high is not None:
            bound += f" and <= {high}"
        msg = f"{where}: must be {bound}, found {_short(value)}"
        raise RecipeError(msg)


def _build(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with each value checked against the field's type."""
    import typing

    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping, found {type(data).__name__}"
        raise RecipeError(msg)
    unknown = set(data) - _fields(cls)
    if unknown:
        msg = (
            f"{where}: unknown key(s) {_short(sorted(map(str, unknown)))}; valid: "
            f"{', '.join(sorted(_fields(cls)))}"
        )
        raise RecipeError(msg)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        typed = _typed(value, hints[key], f"{where}.{key}")
        values[key] = tuple(typed) if isinstance(typed, list) else typed
    return cls(**values)


@functools.cache
def _trainer_hints(stage: str) -> dict[str, Any]:
    import typing

    from trl import GRPOConfig, SFTConfig

    cls = GRPOConfig if stage == "grpo" else SFTConfig
    return typing.get_type_hints(cls)


def _trainer_fields(block: Any, stage: str, where: str) -> dict[str, Any]:
    """A ``GRPOConfig`` / ``SFTConfig`` block: known fields, typed, in range, no paths."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        msg = f"{where}: expected a mapping, found {type(block).__name__}"
        raise RecipeError(msg)
    hints = _trainer_hints(stage)
    config = "GRPOConfig" if stage == "grpo" else "SFTConfig"
    out = {}
    for key, value in block.items():
        if key in FORBIDDEN_TRAINER_FIELDS:
            msg = f"{where}.{key}: not allowed in a recipe ({FORBIDDEN_TRAINER_FIELDS[key]})"
            raise RecipeError(msg)
        if key not in hints:
            msg = f"{where}: {_short(key)} is not a {config} field"
            raise RecipeError(msg)
        typed = _typed(value, hints[key], f"{where}.{key}")
        if key in TRAINER_RANGES:
            _in_range(typed, *TRAINER_RANGES[key], f"{where}.{key}")
        out[key] = typed
    return out


def _check_rewards(rewards: tuple[RewardSpec, ...], where: str) -> None:
    from training.rewards import get_reward

    if not rewards:
        msg = f"{where}: rewards: a recipe with a grpo stage needs at least one reward"
        raise RecipeError(msg)
    for i, spec in enumerate(rewards):
        if spec.weight < 0:
            msg = f"{where}: rewards[{i}].weight: must be >= 0, found {spec.weight}"
            raise RecipeError(msg)
        try:
            get_reward(spec.name, **spec.params)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{where}: rewards[{i}]: {_short(str(exc), 200)}"
            raise RecipeError(msg) from exc


def _check_deepspeed(value: Any, source: Path, where: str) -> str | None:
    """``zero2``, ``zero3`` or a json file (relative to the recipe) holding a DeepSpeed config."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        msg = f"{where}.deepspeed: expected zero2, zero3 or a json file, found {_short(value)}"
        raise RecipeError(msg)
    if (DEEPSPEED_DIR / f"{value}.json").is_file() and "/" not in value:
        return value
    path = Path(value) if Path(value).is_absolute() else source.parent / value
    if path.suffix != ".json" or not path.is_file():
        msg = (
            f"{where}.deepspeed: {_short(value)} is neither zero2, zero3 nor an existing .json file"
        )
        raise RecipeError(msg)
    try:
        config = json.loads(path.read_text(encoding="utf-8")[: MAX_RECIPE_BYTES + 1])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{where}.deepspeed: {path} is not valid JSON ({type(exc).__name__})"
        raise RecipeError(msg) from None
    keys = {"zero_optimization", "train_batch_size", "train_micro_batch_size_per_gpu"}
    if not isinstance(config, dict) or not keys & set(config):
        msg = (
            f"{where}.deepspeed: {path} is not a DeepSpeed config (none of "
            f"{', '.join(sorted(keys))})"
        )
        raise RecipeError(msg)
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_stages(value: Any, where: str) -> tuple[str, ...]:
    stages = _typed(value, tuple[str, ...], f"{where}.stages")
    if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
        msg = (
            f"{where}.stages: a list of {' and/or '.join(STAGES)}, each once, found {_short(value)}"
        )
        raise RecipeError(msg)
    if list(stages) != [s for s in STAGES if s in stages]:
        msg = f"{where}.stages: stages run in the order {', '.join(STAGES)}, found {_short(value)}"
        raise RecipeError(msg)
    return stages


def _check_unused(data: dict, recipe: Recipe, where: str) -> None:
    """Options that nothing would read are errors, not silently ignored settings."""
    if recipe.peft.method == "none":
        given = sorted(set(data.get("peft") or {}) - {"method"})
        if given:
            msg = f"{where}.peft: {', '.join(given)} set but peft.method is none (no adapter)"
            raise RecipeError(msg)
    if not recipe.difficulty.enabled:
        given = sorted(set(data.get("difficulty") or {}) - {"enabled"})
        if given:
            msg = f"{where}.difficulty: {', '.join(given)} set but difficulty.enabled is false"
            raise RecipeError(msg)
    if "sft" not in recipe.stages and "sft" in data:
        msg = f"{where}.sft: an sft block but no sft stage (add sft to stages)"
        raise RecipeError(msg)
    if "grpo" not in recipe.stages:
        for key in ("grpo", "difficulty", "rewards"):
            if data.get(key):
                msg = f"{where}.{key}: set but the recipe has no grpo stage"
                raise RecipeError(msg)
    trainable = recipe.sft.trainable
    if trainable == "adapter" and recipe.peft.method == "none":
        msg = f"{where}.sft.trainable: adapter needs peft.method lora or qlora"
        raise RecipeError(msg)
    if trainable == "all" and recipe.peft.method != "none":
        msg = (
            f"{where}.sft.trainable: all cannot train with a LoRA adapter (PEFT freezes the "
            "base weights); use adapter, projector or module names, or peft.method none"
        )
        raise RecipeError(msg)
    if trainable == "emit_module" and not recipe.emit_module.active:
        msg = f"{where}.sft.trainable: emit_module needs an enabled emit_module block"
        raise RecipeError(msg)
    if isinstance(trainable, str) and trainable not in SFT_TRAINABLE:
        msg = (
            f"{where}.sft.trainable: {', '.join(SFT_TRAINABLE)} or a list of module names, "
            f"found {_short(trainable)}"
        )
        raise RecipeError(msg)
    if isinstance(trainable, tuple) and (not trainable or not all(trainable)):
        msg = f"{where}.sft.trainable: an empty list of module names trains nothing"
        raise RecipeError(msg)


def _emit_module(data: dict, where: str) -> EmitModuleSettings:
    """The recipe's ``emit_module`` block; absent: the module is off."""
    if "emit_module" not in data:
        return EmitModuleSettings(enabled=False)
    block = data["emit_module"]
    if not isinstance(block, dict):
        msg = f"{where}.emit_module: expected a mapping, found {_short(block)}"
        raise RecipeError(msg)
    if block.get("enabled", True) is False and set(block) - {"enabled"}:
        msg = f"{where}.emit_module: settings given with enabled: false are read by nothing"
        raise RecipeError(msg)
    try:
        return EmitModuleSettings.from_mapping(block, source=f"{where}: emit_module")
    except EmitSettingsError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load and validate a recipe by name (``training/recipes/<name>.yaml``) or path.

    >>> load_recipe("demo").stages
    ('sft', 'grpo')
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        msg = f"{path}: no such recipe; built-in recipes: {names}"
        raise RecipeError(msg)
    data = read_yaml(path)
    where = str(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping at the top level"
        raise RecipeError(msg)
    unknown = set(data) - (_fields(Recipe) - {"source"})
    if unknown:
        msg = f"{where}: unknown key(s) {_short(sorted(map(str, unknown)))}"
        raise RecipeError(msg)
    for required in ("name", "model", "training_set"):
        if required not in data:
            msg = f"{where}: missing required key {required!r}"
            raise RecipeError(msg)
    name = _typed(data["name"], str, f"{where}.name")
    if not _NAME.match(name):
        msg = f"{where}.name: letters, digits, '.', '_' and '-' only, found {_short(name)}"
        raise RecipeError(msg)
    stages = _check_stages(data.get("stages", ["grpo"]), where)
    raw_rewards = data.get("rewards") or []
    if not isinstance(raw_rewards, list):
        msg = f"{where}.rewards: expected a list, found {type(raw_rewards).__name__}"
        raise RecipeError(msg)
    rewards = tuple(
        _build(RewardSpec, r, f"{where}.rewards[{i}]") for i, r in enumerate(raw_rewards)
    )
    sft_data = data.get("sft") or {}
    sft = _build(SftSpec, {k: v for k, v in sft_data.items() if k != "args"}, f"{where}.sft")
    if isinstance(sft_data, dict) and "args" in sft_data:
        sft = dataclasses.replace(
            sft, args=_trainer_fields(sft_data["args"], "sft", f"{where}.sft.args")
        )
    max_samples = data.get("max_train_samples")
    if max_samples is not None:
        max_samples = _typed(max_samples, int, f"{where}.max_train_samples")
        _in_range(max_samples, 1, True, None, f"{where}.max_train_samples")
    recipe = Recipe(
        name=name,
        model=_typed(data["model"], str, f"{where}.model"),
        training_set=_typed(data["training_set"], str, f"{where}.training_set"),
        rewards=rewards,
        description=_typed(data.get("description", ""), str, f"{where}.description"),
        stages=stages,
        sft=sft,
        difficulty=_build(DifficultySpec, data.get("difficulty") or {}, f"{where}.difficulty"),
        peft=_build(PeftSpec, data.get("peft") or {}, f"{where}.peft"),
        image=_build(ImageSpec, data.get("image") or {}, f"{where}.image"),
        deepspeed=_check_deepspeed(data.get("deepspeed"), path, where),
        max_train_samples=max_samples,
        grpo=_trainer_fields(data.get("grpo"), "grpo", f"{where}.grpo"),
        emit_module=_emit_module(data, where),
        source=str(path),
    )
    from iad_pipeline.stages import TRAINING_SETS

    if recipe.training_set not in TRAINING_SETS:
        msg = (
            f"{where}.training_set: {_short(recipe.training_set)} unknown; valid: "
            f"{', '.join(TRAINING_SETS)}"
        )
        raise RecipeError(msg)
    if recipe.peft.method not in ("none", "lora", "qlora"):
        msg = f"{where}.peft.method: none, lora or qlora, found {_short(recipe.peft.method)}"
        raise RecipeError(msg)
    p, d, i = recipe.peft, recipe.difficulty, recipe.image
    _in_range(p.r, 1, True, None, f"{where}.peft.r")
    _in_range(p.alpha, 0, False, None, f"{where}.peft.alpha")
    _in_range(p.dropout, 0.0, True, 0.99, f"{where}.peft.dropout")
    if not p.target_modules:
        msg = f"{where}.peft.target_modules: empty; LoRA needs at least one module"
        raise RecipeError(msg)
    _in_range(d.all_wrong_weight, 0.0, True, None, f"{where}.difficulty.all_wrong_weight")
    _in_range(d.resample_rounds, 0, True, None, f"{where}.difficulty.resample_rounds")
    _in_range(i.min_pixels, 1, True, None, f"{where}.image.min_pixels")
    _in_range(i.max_pixels, i.min_pixels, True, None, f"{where}.image.max_pixels")
    _check_unused(data, recipe, where)
    if "grpo" in recipe.stages:
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
        data = read_yaml(path) or {}
        out[path.stem] = str(data.get("training_set", ""))
    return out
