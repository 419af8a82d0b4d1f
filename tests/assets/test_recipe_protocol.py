"""A checkpoint is evaluated the way its recipe trained it: the evaluation's default protocol
is the recipe's (its ``evaluation`` block, else its training set's answer style)."""

from assets.evaluation import RECIPE_PROTOCOL, EvaluationConfig, recipe_protocol
from eval.protocols import PROTOCOLS, protocol_named
from training.config import EVAL_PROTOCOLS


def test_the_default_protocol_follows_the_recipe() -> None:
    assert EvaluationConfig().protocol == RECIPE_PROTOCOL
    # EMIT's questions are asked with EMIT's protocol; the demo shuffles options with seed 0
    # and asks as it trains (prompt: question): images and question, no system message, the
    # images at the recipe's pixel bounds (not EMIT's 256-1280 x 28 x 28)
    assert recipe_protocol("emit") == ("emit_think", {})
    short = {"form": "question", "knowledge": False, "system_prompt": None}
    short |= {"min_pixels": 3136, "max_pixels": 19600}
    assert recipe_protocol("demo") == ("emit_think", {"shuffle_options": True, "seed": 0} | short)
    # AD-FM's and AnomalyR1's recipes on MMAD: MMAD's own protocol
    assert recipe_protocol("adfm") == ("mmad", {})
    assert recipe_protocol("anomalyr1") == ("mmad", {})
    # a run folder that names no recipe: MMAD's protocol
    assert recipe_protocol("my-own-run") == ("mmad", {})
    name, changes = recipe_protocol("demo")
    assert protocol_named(name, **changes).name.startswith("emit_think-1shot")
    assert "+shuffle0" in protocol_named(name, **changes).name
    assert protocol_named(name, **changes).name.endswith("+question_only")


def test_recipes_name_the_protocols_evaluation_has() -> None:
    assert set(EVAL_PROTOCOLS) == set(PROTOCOLS)
