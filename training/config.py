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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iad_pipeline.models.emit.settings import EmitModuleSettings, EmitSettingsError
from training.recipe_yaml import (
    RecipeError,
    as_type,
    build,
    fields,
    in_range,
    read_yaml,
    short,
)
from training.trainer_fields import DEEPSPEED_DIR, check_deepspeed, trainer_fields

RECIPES_DIR = Path(__file__).parent / "recipes"
SFT_THINK = ("empty", "option")  # sft.think (training.sft.reference_think)
# recipe.prompt: the training set's protocol prompt, or the images and the question alone
# (iad_pipeline.questions.prompts.question_only), in training and in evaluation
PROMPT_FORMS = ("full", "question")
# eval.protocols.PROTOCOLS' names (training does not import eval; a test keeps them equal), and
# the protocol each training-set style's prompts come from
EVAL_PROTOCOLS = ("mmad", "emit_think", "emit_direct")
STYLE_PROTOCOLS = {"emit": "emit_think"}
TINY_MODEL = "tiny"  # the model name that builds the tiny offline Qwen2.5-VL
# model names built offline (random weights): name -> (folder, training.tiny_model size)
OFFLINE_QWEN = {TINY_MODEL: ("tiny-qwen25vl", None), "small": ("small-qwen25vl", "small")}
TINY_INTERNVL = "tiny-internvl3"  # the model name that builds the tiny offline InternVL3
STAGES = ("sft", "grpo")  # the order stages run in
SFT_TRAINABLE = ("all", "adapter", "projector", "emit_module")


@dataclass(frozen=True)
class RewardSpec:
    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DifficultyConfig:
    """Switches of difficulty-aware GRPO: the recipe's ``difficulty`` block, and what
    :class:`~training.trainer.DifficultyAwareGRPOTrainer` takes.

    Attributes:
        enabled: use the difficulty-aware trainer (off: plain GRPO).
        reweight: multiply each group's advantages by ``1 + n_wrong / G``.
        all_wrong_weight: the weight of a group with no correct completion: 1.0 as in EMIT's
            code, 2.0 as the paper's eq. 5 literally gives.
        resample_rounds: regenerate groups with no correct completion up to this many times
            (0 turns resampling off).
        mask_unsolved: drop groups still unsolved after resampling from the loss.
        accuracy_reward: index or name (``__name__``) of the reward function whose value
            ``> 0`` means correct.
    """

    enabled: bool = False
    reweight: bool = True
    all_wrong_weight: float = 1.0
    resample_rounds: int = 3
    mask_unsolved: bool = False
    accuracy_reward: str | int = 0

    def __post_init__(self) -> None:
        if self.all_wrong_weight < 0:
            msg = (
                f"all_wrong_weight={self.all_wrong_weight}; expected >= 0 "
                "(1.0 as in EMIT's code, 2.0 as in its paper)"
            )
            raise ValueError(msg)
        if isinstance(self.resample_rounds, bool) or not isinstance(self.resample_rounds, int):
            msg = f"resample_rounds={self.resample_rounds!r}; expected an int >= 0"
            raise TypeError(msg)
        if self.resample_rounds < 0:
            msg = (
                f"resample_rounds: must be >= 0 (0 turns resampling off), "
                f"found {self.resample_rounds}"
            )
            raise ValueError(msg)


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
class EvaluationSpec:
    """How the recipe's checkpoints are evaluated on MMAD when the evaluation leaves the
    protocol to the recipe (``protocol: recipe``, the evaluation assets' default).

    ``protocol``: a name of ``eval.protocols.PROTOCOLS``; unset, the protocol whose prompts and
    answer format the training set's questions use (``emit_think`` for EMIT's, ``mmad``
    otherwise), so a checkpoint is asked the way it was trained. ``shuffle_options`` and
    ``seed``: re-letter every question's options in a seeded order (answer letters balanced
    over the set instead of MMAD's fixed ``A. Yes``).
    """

    protocol: str | None = None
    shuffle_options: bool = False
    seed: int = 0


@dataclass(frozen=True)
class SftSpec:
    """The SFT stage: which parameters train, and its ``SFTConfig`` fields.

    ``trainable``: ``all`` (every weight; without peft), ``adapter`` (the LoRA adapter only;
    needs peft), ``projector`` (the vision-to-text merger; with peft, adapter plus merger), or
    a list of module-name prefixes (``[visual.merger, model.language_model.layers.1]``).
    Unset: ``adapter`` with peft, else ``all``.

    ``think``: what the reference completion's think block says: ``empty`` (the default,
    ``<think></think>``) or ``option`` (the text of the correct option, e.g. ``<think>Yes</think>``:
    the model learns to state its finding, then to pick the letter the shuffled options give
    it). ``option`` needs a style whose answer format has a think block.
    """

    trainable: str | tuple[str, ...] | None = None  # None: adapter with peft, else all
    think: str = "empty"
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
    evaluation: EvaluationSpec = EvaluationSpec()
    difficulty: DifficultyConfig = DifficultyConfig()
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
    # how questions are shown, in training and in evaluation: "full" (the training set's
    # protocol prompt) or "question" (the images and the question alone, our short form)
    prompt: str = "full"
    # the training set's tasks every stage trains on (iad_pipeline.questions.schema.TASKS);
    # None: all of them
    tasks: tuple[str, ...] | None = None
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
            msg = f"{where}: rewards[{i}]: {short(str(exc), 200)}"
            raise RecipeError(msg) from exc


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_stages(value: Any, where: str) -> tuple[str, ...]:
    stages = as_type(value, tuple[str, ...], f"{where}.stages")
    if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
        msg = (
            f"{where}.stages: a list of {' and/or '.join(STAGES)}, each once, found {short(value)}"
        )
        raise RecipeError(msg)
    if list(stages) != [s for s in STAGES if s in stages]:
        msg = f"{where}.stages: stages run in the order {', '.join(STAGES)}, found {short(value)}"
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
    if not recipe.evaluation.shuffle_options and "seed" in (data.get("evaluation") or {}):
        msg = f"{where}.evaluation.seed: set but evaluation.shuffle_options is false"
        raise RecipeError(msg)
    _check_trainable(recipe, where)


def _check_trainable(recipe: Recipe, where: str) -> None:
    """``sft.trainable`` against the adapter and the EMIT module."""
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
            f"found {short(trainable)}"
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
        msg = f"{where}.emit_module: expected a mapping, found {short(block)}"
        raise RecipeError(msg)
    if block.get("enabled", True) is False and set(block) - {"enabled"}:
        msg = f"{where}.emit_module: settings given with enabled: false are read by nothing"
        raise RecipeError(msg)
    try:
        return EmitModuleSettings.from_mapping(block, source=f"{where}: emit_module")
    except EmitSettingsError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def _read_recipe(name_or_path: str | Path) -> tuple[Path, dict]:
    """The recipe file of a name (``training/recipes/<name>.yaml``) or path, and its mapping
    with only known top-level keys and the required ones present."""
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
    unknown = set(data) - (fields(Recipe) - {"source"})
    if unknown:
        msg = f"{where}: unknown key(s) {short(sorted(map(str, unknown)))}"
        raise RecipeError(msg)
    for required in ("name", "model", "training_set"):
        if required not in data:
            msg = f"{where}: missing required key {required!r}"
            raise RecipeError(msg)
    return path, data


def _rewards(data: dict, where: str) -> tuple[RewardSpec, ...]:
    raw_rewards = data.get("rewards") or []
    if not isinstance(raw_rewards, list):
        msg = f"{where}.rewards: expected a list, found {type(raw_rewards).__name__}"
        raise RecipeError(msg)
    return tuple(build(RewardSpec, r, f"{where}.rewards[{i}]") for i, r in enumerate(raw_rewards))


def _sft(data: dict, where: str) -> SftSpec:
    sft_data = data.get("sft") or {}
    sft = build(SftSpec, {k: v for k, v in sft_data.items() if k != "args"}, f"{where}.sft")
    if isinstance(sft_data, dict) and "args" in sft_data:
        sft = dataclasses.replace(
            sft, args=trainer_fields(sft_data["args"], "sft", f"{where}.sft.args")
        )
    return sft


def _check_values(recipe: Recipe, where: str) -> None:
    """Values each field allows: the training set, the adapter, ranges."""
    from iad_pipeline.stages import TRAINING_SETS

    if recipe.training_set not in TRAINING_SETS:
        msg = (
            f"{where}.training_set: {short(recipe.training_set)} unknown; valid: "
            f"{', '.join(TRAINING_SETS)}"
        )
        raise RecipeError(msg)
    if recipe.prompt not in PROMPT_FORMS:
        msg = f"{where}.prompt: {' or '.join(PROMPT_FORMS)}, found {short(recipe.prompt)}"
        raise RecipeError(msg)
    if recipe.sft.think not in SFT_THINK:
        msg = f"{where}.sft.think: {' or '.join(SFT_THINK)}, found {short(recipe.sft.think)}"
        raise RecipeError(msg)
    if recipe.evaluation.protocol not in (None, *EVAL_PROTOCOLS):
        msg = (
            f"{where}.evaluation.protocol: {short(recipe.evaluation.protocol)} unknown; valid: "
            f"{', '.join(EVAL_PROTOCOLS)}"
        )
        raise RecipeError(msg)
    if recipe.peft.method not in ("none", "lora", "qlora"):
        msg = f"{where}.peft.method: none, lora or qlora, found {short(recipe.peft.method)}"
        raise RecipeError(msg)
    p, i = recipe.peft, recipe.image
    in_range(p.r, 1, True, None, f"{where}.peft.r")
    in_range(p.alpha, 0, False, None, f"{where}.peft.alpha")
    in_range(p.dropout, 0.0, True, 0.99, f"{where}.peft.dropout")
    if not p.target_modules:
        msg = f"{where}.peft.target_modules: empty; LoRA needs at least one module"
        raise RecipeError(msg)
    in_range(i.min_pixels, 1, True, None, f"{where}.image.min_pixels")
    in_range(i.max_pixels, i.min_pixels, True, None, f"{where}.image.max_pixels")


def _check_group_sizes(recipe: Recipe, where: str) -> None:
    """A reward's ``num_generations`` agrees with the group size GRPO generates."""
    group = recipe.grpo.get("num_generations")
    for spec in recipe.rewards:
        given = spec.params.get("num_generations")
        if given is not None and group is not None and given != group:
            msg = (
                f"{where}: reward {spec.name!r} has num_generations {given} but grpo "
                f"generates {group} per prompt; they must agree"
            )
            raise RecipeError(msg)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load and validate a recipe by name (``training/recipes/<name>.yaml``) or path.

    >>> load_recipe("demo").stages
    ('sft', 'grpo')
    """
    path, data = _read_recipe(name_or_path)
    where = str(path)
    name = as_type(data["name"], str, f"{where}.name")
    if not _NAME.match(name):
        msg = f"{where}.name: letters, digits, '.', '_' and '-' only, found {short(name)}"
        raise RecipeError(msg)
    max_samples = data.get("max_train_samples")
    if max_samples is not None:
        max_samples = as_type(max_samples, int, f"{where}.max_train_samples")
        in_range(max_samples, 1, True, None, f"{where}.max_train_samples")
    recipe = Recipe(
        name=name,
        model=as_type(data["model"], str, f"{where}.model"),
        training_set=as_type(data["training_set"], str, f"{where}.training_set"),
        rewards=_rewards(data, where),
        description=as_type(data.get("description", ""), str, f"{where}.description"),
        stages=_check_stages(data.get("stages", ["grpo"]), where),
        sft=_sft(data, where),
        evaluation=build(EvaluationSpec, data.get("evaluation") or {}, f"{where}.evaluation"),
        difficulty=build(DifficultyConfig, data.get("difficulty") or {}, f"{where}.difficulty"),
        peft=build(PeftSpec, data.get("peft") or {}, f"{where}.peft"),
        image=build(ImageSpec, data.get("image") or {}, f"{where}.image"),
        deepspeed=check_deepspeed(data.get("deepspeed"), path, where),
        max_train_samples=max_samples,
        grpo=trainer_fields(data.get("grpo"), "grpo", f"{where}.grpo"),
        emit_module=_emit_module(data, where),
        prompt=as_type(data.get("prompt", "full"), str, f"{where}.prompt"),
        tasks=_tasks(data, where),
        source=str(path),
    )
    _check_values(recipe, where)
    _check_unused(data, recipe, where)
    if "grpo" in recipe.stages:
        _check_rewards(recipe.rewards, where)
    _check_group_sizes(recipe, where)
    return recipe


def _tasks(data: dict, where: str) -> tuple[str, ...] | None:
    """``tasks``: a non-empty list of the question bank's task names, each once."""
    from iad_pipeline.questions.schema import TASKS

    if data.get("tasks") is None:
        return None
    tasks = as_type(data["tasks"], list[str], f"{where}.tasks")
    for task in tasks:
        if task not in TASKS:
            msg = f"{where}.tasks: {short(task)} unknown; valid: {', '.join(TASKS)}"
            raise RecipeError(msg)
    if not tasks or len(set(tasks)) != len(tasks):
        msg = f"{where}.tasks: a non-empty list without repeats, found {short(tasks)}"
        raise RecipeError(msg)
    return tuple(tasks)


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


def evaluation_protocol(recipe: Recipe) -> tuple[str, dict]:
    """``(protocol name, changes)`` the recipe's checkpoints are evaluated with on MMAD: its
    ``evaluation`` block, else the protocol of its training set's style (``emit_think`` for
    EMIT's questions), in the recipe's prompt form (``prompt: question``: the images and the
    question alone, no system message, within the recipe's pixel bounds). Training records it
    in the run folder's ``RUN.json``.

    >>> evaluation_protocol(load_recipe("emit")), evaluation_protocol(load_recipe("adfm"))
    (('emit_think', {}), ('mmad', {}))
    >>> sorted(evaluation_protocol(load_recipe("demo"))[1])
    ['form', 'knowledge', 'max_pixels', 'min_pixels', 'seed', 'shuffle_options', 'system_prompt']
    """
    from iad_pipeline.stages import TRAINING_SETS

    spec = recipe.evaluation
    style = TRAINING_SETS[recipe.training_set].style
    name = spec.protocol or STYLE_PROTOCOLS.get(style, "mmad")
    changes: dict = {"shuffle_options": True, "seed": spec.seed} if spec.shuffle_options else {}
    if recipe.prompt == "question":
        # asked as trained: the images and the question alone, without a system message, the
        # images within the recipe's pixel bounds
        changes |= {
            "form": "question",
            "knowledge": False,
            "system_prompt": None,
            "min_pixels": recipe.image.min_pixels,
            "max_pixels": recipe.image.max_pixels,
        }
    return name, changes
