"""DifficultyAwareGRPOTrainer: EMIT's reweighting and resampling on the tiny Qwen2.5-VL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from trl import GRPOTrainer

from training.trainer import DifficultyAwareGRPOTrainer, DifficultyConfig, difficulty_weights

WORKER = Path(__file__).with_name("dist_worker.py")
G = 4


# -- scripted rewards (the real reward library lives elsewhere) ------------------------------


def first_of_group_right(completions: list, solution: list, **kwargs) -> list[float]:
    """1 for the first completion of each group unless the solution is "Z" (never right)."""
    return [1.0 if i % G == 0 and s != "Z" else 0.0 for i, s in enumerate(solution)]


def position(completions: list, **kwargs) -> list[float]:
    """0, 0.1, 0.2, 0.3 along each group: a second reward that always varies within a group."""
    return [0.1 * (i % G) for i in range(len(completions))]


def never_right(completions: list, **kwargs) -> list[float]:
    return [0.0] * len(completions)


class RightFromSecondDraw:
    """Wrong on the first call for a "Z" prompt, right (first of group) from the second on."""

    __name__ = "right_from_second_draw"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, completions: list, solution: list, **kwargs) -> list[float]:
        self.calls += 1
        right_now = self.calls > 1
        return [
            1.0 if i % G == 0 and (s != "Z" or right_now) else 0.0 for i, s in enumerate(solution)
        ]


def count_generations(trainer) -> list[int]:
    """Record the number of prompts passed to each generate call."""
    sizes: list[int] = []
    generate = trainer._generate_single_turn

    def counting(prompt_ids, *args, **kwargs):
        sizes.append(len(prompt_ids))
        return generate(prompt_ids, *args, **kwargs)

    trainer._generate_single_turn = counting
    return sizes


def score(trainer, rows) -> dict:
    trainer.model.train()
    torch.manual_seed(0)
    return trainer._generate_and_score_completions(rows)


# -- the weight formula and the config ------------------------------------------------------


@pytest.mark.parametrize(
    ("n_right", "all_wrong_weight", "expected"),
    [
        (4, 1.0, 1.0),  # all right: 1 + 0/4
        (3, 1.0, 1.25),  # 1 + 1/4
        (1, 1.0, 1.75),  # 1 + 3/4
        (0, 1.0, 1.0),  # all wrong, EMIT's code: w[w == 1] = 0; w += 1
        (0, 2.0, 2.0),  # all wrong, the paper's eq. 5: 1 + 4/4
        (1, 2.0, 1.75),  # all_wrong_weight touches only all-wrong groups
    ],
)
def test_difficulty_weights(n_right: int, all_wrong_weight: float, expected: float) -> None:
    correct = torch.tensor([[True] * n_right + [False] * (G - n_right)])
    assert difficulty_weights(correct, all_wrong_weight).tolist() == [expected]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"resample_rounds": -1}, ValueError),
        ({"resample_rounds": 1.5}, TypeError),
        ({"resample_rounds": True}, TypeError),
        ({"all_wrong_weight": -0.5}, ValueError),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        DifficultyConfig(**kwargs)


def test_unknown_accuracy_reward_lists_the_valid_names(make_trainer) -> None:
    with pytest.raises(ValueError, match=r"'accuracy'.*\['first_of_group_right', 'position'\]"):
        make_trainer(
            DifficultyAwareGRPOTrainer,
            [first_of_group_right, position],
            difficulty=DifficultyConfig(accuracy_reward="accuracy"),
        )


def test_resampling_rejects_an_async_accuracy_reward(make_trainer) -> None:
    async def accuracy(completions: list, **kwargs) -> list[float]:
        return [0.0] * len(completions)

    with pytest.raises(ValueError, match="plain synchronous function"):
        make_trainer(DifficultyAwareGRPOTrainer, [accuracy], difficulty=DifficultyConfig())


# -- (1) reweighting --------------------------------------------------------------------------


def test_plain_trl_advantages_are_group_normalised(make_trainer, group_batch) -> None:
    """The baseline the weights multiply: (R - mean_g) / (std_g + 1e-4), unbiased std."""
    out = score(make_trainer(GRPOTrainer, [first_of_group_right, position]), group_batch([0, 1]))
    rewards = torch.tensor([1.0, 0.1, 0.2, 0.3, 0.0, 0.1, 0.2, 0.3]).view(2, G)
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(out["advantages"], expected.flatten())


@pytest.mark.parametrize(
    ("all_wrong_weight", "weights"),
    [
        (1.0, [1.75] * 4 + [1.0] * 4),  # prompt 0: 1 of 4 right; prompt 1 ("Z"): none right
        (2.0, [1.75] * 4 + [2.0] * 4),
    ],
)
def test_advantages_are_plain_trl_times_group_weights(
    make_trainer, group_batch, all_wrong_weight: float, weights: list[float]
) -> None:
    rewards = [first_of_group_right, position]
    rows = group_batch([0, 1])
    plain = score(make_trainer(GRPOTrainer, rewards), rows)
    config = DifficultyConfig(resample_rounds=0, all_wrong_weight=all_wrong_weight)
    ours = score(make_trainer(DifficultyAwareGRPOTrainer, rewards, difficulty=config), rows)
    assert torch.equal(ours["completion_ids"], plain["completion_ids"])
    torch.testing.assert_close(ours["advantages"], plain["advantages"] * torch.tensor(weights))


def test_reweighting_off_leaves_trl_advantages(make_trainer, group_batch) -> None:
    rewards = [first_of_group_right, position]
    rows = group_batch([0, 1])
    plain = score(make_trainer(GRPOTrainer, rewards), rows)
    config = DifficultyConfig(reweight=False, resample_rounds=0)
    ours = score(make_trainer(DifficultyAwareGRPOTrainer, rewards, difficulty=config), rows)
    torch.testing.assert_close(ours["advantages"], plain["advantages"])


def test_accuracy_reward_by_name_picks_that_column(make_trainer, group_batch) -> None:
    """With `position` as accuracy, 3 of 4 are "right" (> 0) in both groups: w = 1.25."""
    rewards = [first_of_group_right, position]
    rows = group_batch([0, 1])
    plain = score(make_trainer(GRPOTrainer, rewards), rows)
    config = DifficultyConfig(resample_rounds=0, accuracy_reward="position")
    ours = score(make_trainer(DifficultyAwareGRPOTrainer, rewards, difficulty=config), rows)
    torch.testing.assert_close(ours["advantages"], plain["advantages"] * 1.25)


def test_mask_unsolved_drops_the_group_from_the_loss(make_trainer, group_batch) -> None:
    config = DifficultyConfig(resample_rounds=0, mask_unsolved=True)
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [first_of_group_right, position], difficulty=config
    )
    out = score(trainer, group_batch([0, 1]))
    assert out["advantages"][G:].abs().sum() == 0
    assert out["advantages"][:G].abs().sum() > 0
    assert out["completion_mask"][G:].sum() == 0
    assert out["completion_mask"][:G].sum() > 0
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert list(trainer._logs["advantages"])[G:] == [0.0] * G


# -- (2) resampling ---------------------------------------------------------------------------


def test_resampling_regenerates_only_the_failing_group(make_trainer, group_batch) -> None:
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [first_of_group_right, position], difficulty=DifficultyConfig()
    )
    sizes = count_generations(trainer)
    score(trainer, group_batch([0, 1, 2]))  # prompt 1's solution is "Z": never right
    assert sizes == [12, 4, 4, 4]  # the batch, then 3 rounds of prompt 1's group alone
    metrics = trainer._metrics["train"]
    assert metrics["difficulty/resample_rounds"] == [3.0]
    assert metrics["difficulty/resampled_groups"] == [1.0]
    assert metrics["difficulty/unsolved_groups"] == [1.0]
    assert len(metrics["completions/mean_length"]) == 1  # resampling calls leave no trace


def test_resampling_regenerates_the_failing_prompts(make_trainer, group_batch) -> None:
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [first_of_group_right, position], difficulty=DifficultyConfig()
    )
    seen: list[list[int]] = []
    generate = trainer._generate_single_turn

    def recording(prompt_ids, *args, **kwargs):
        seen.append([tuple(ids) for ids in prompt_ids])
        return generate(prompt_ids, *args, **kwargs)

    trainer._generate_single_turn = recording
    score(trainer, group_batch([0, 1, 2]))
    first = seen[0]
    assert all(call == first[G : 2 * G] for call in seen[1:])


def test_a_rank_with_fewer_failing_groups_pads_its_redraws(make_trainer, group_batch) -> None:
    """Another rank has 2 failing groups: this one (1 failing) redraws 2 groups a round."""
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [first_of_group_right, position], difficulty=DifficultyConfig()
    )
    seen: list[list[tuple]] = []
    generate = trainer._generate_single_turn

    def recording(prompt_ids, *args, **kwargs):
        seen.append([tuple(ids) for ids in prompt_ids])
        return generate(prompt_ids, *args, **kwargs)

    trainer._generate_single_turn = recording
    trainer._gather_count = lambda count: torch.tensor([count, 2])  # [this rank, the other]
    score(trainer, group_batch([0, 1]))
    failing_group = seen[0][G : 2 * G]
    assert [len(call) for call in seen] == [8, 8, 8, 8]
    assert all(call == failing_group * 2 for call in seen[1:])  # padded with its own group
    assert trainer._metrics["train"]["difficulty/resampled_groups"] == [3.0]


def test_a_solved_redraw_is_spliced_in(make_trainer, group_batch) -> None:
    reward = RightFromSecondDraw()
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [reward, position], difficulty=DifficultyConfig()
    )
    sizes = count_generations(trainer)
    out = score(trainer, group_batch([0, 1]))
    assert sizes == [8, 4]  # one round: the redraw of prompt 1 has a right answer
    metrics = trainer._metrics["train"]
    assert metrics["difficulty/resample_rounds"] == [1.0]
    assert metrics["difficulty/unsolved_groups"] == [0.0]
    assert metrics["difficulty/mean_weight"] == [1.75]  # both groups: 1 of 4 right
    assert out["advantages"].shape == (8,)


def test_no_resampling_when_every_group_is_solved_or_it_is_off(make_trainer, group_batch) -> None:
    rewards = [first_of_group_right, position]
    solved = make_trainer(DifficultyAwareGRPOTrainer, rewards, difficulty=DifficultyConfig())
    sizes_solved = count_generations(solved)
    score(solved, group_batch([0, 2]))
    off = make_trainer(
        DifficultyAwareGRPOTrainer, rewards, difficulty=DifficultyConfig(resample_rounds=0)
    )
    sizes_off = count_generations(off)
    score(off, group_batch([1, 3]))
    assert sizes_solved == [8]
    assert sizes_off == [8]
    assert off._metrics["train"]["difficulty/unsolved_groups"] == [2.0]


# -- (5, 6) training steps and logged metrics -------------------------------------------------

LOGGED = (
    "frac_zero_variance_groups",
    "difficulty/mean_weight",
    "difficulty/resample_rounds",
    "difficulty/resampled_groups",
    "difficulty/unsolved_groups",
    "rewards/first_of_group_right/mean",
    "rewards/position/mean",
)


@pytest.mark.parametrize(
    "peft_config",
    [None, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])],
    ids=["full", "lora"],
)
def test_two_training_steps_log_the_difficulty_metrics(make_trainer, peft_config) -> None:
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer,
        [first_of_group_right, position],
        peft_config=peft_config,
        difficulty=DifficultyConfig(mask_unsolved=True),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.state.global_step == 2
    steps = [entry for entry in trainer.state.log_history if "difficulty/mean_weight" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert set(LOGGED) <= set(entry)
        assert 1.0 <= entry["difficulty/mean_weight"] <= 2.0
        assert 0.0 <= entry["frac_zero_variance_groups"] <= 1.0
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    if peft_config is not None:
        assert all("lora_" in n for n in before)


def test_frac_zero_variance_groups_counts_flat_groups(make_trainer, group_batch) -> None:
    """never_right alone: every group's total reward is constant, so every group is flat."""
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer, [never_right], difficulty=DifficultyConfig(resample_rounds=0)
    )
    score(trainer, group_batch([0, 1]))
    assert trainer._metrics["train"]["frac_zero_variance_groups"] == [1.0]
    trainer = make_trainer(
        DifficultyAwareGRPOTrainer,
        [first_of_group_right],
        difficulty=DifficultyConfig(resample_rounds=0),
    )
    score(trainer, group_batch([0, 1]))
    assert trainer._metrics["train"]["frac_zero_variance_groups"] == [0.5]


# -- (3, 4) several processes and DeepSpeed ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_worker(cmd: list[str], out: Path, env: dict[str, str], timeout: int) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"} | env
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{cmd} did not finish within {timeout} s (a collective hung?): {err.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_with_one_failing_rank_finish(tiny_model_dir: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(WORKER),
        str(tiny_model_dir),
        str(tmp_path),
        "ddp",
    ]
    _run_worker(cmd, tmp_path, {}, timeout=300)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert [r["global_step"] for r in reports] == [2, 2]
    # per step: the batch, then 3 rounds; rank 0 regenerates a discarded copy of its own group
    assert reports[0]["generate_sizes"] == reports[1]["generate_sizes"] == [4, 4, 4, 4] * 2
    logged = [e for e in reports[0]["log_history"] if "difficulty/unsolved_groups" in e]
    assert [e["difficulty/unsolved_groups"] for e in logged] == [1.0, 1.0]
    assert [e["difficulty/resampled_groups"] for e in logged] == [1.0, 1.0]


@pytest.mark.slow
def test_deepspeed_zero2_on_cpu_runs_two_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    """DeepSpeed JIT-builds its shared-memory op (~30 s) into this run's own folder.

    Not into the shared ``~/.cache/torch_extensions``: a build killed there leaves a ``lock``
    file that makes every later run wait for it (600 s) and fail.
    """
    extensions = tmp_path / "torch_extensions"
    env = {
        "TORCH_EXTENSIONS_DIR": str(extensions),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }
    cmd = [sys.executable, str(WORKER), str(tiny_model_dir), str(tmp_path), "deepspeed"]
    _run_worker(cmd, tmp_path, env, timeout=600)
    report = json.loads((tmp_path / "rank0.json").read_text(encoding="utf-8"))
    assert report["deepspeed"] is True
    assert report["global_step"] == 2
    assert any("difficulty/mean_weight" in e for e in report["log_history"])
    built = [p.name for p in extensions.rglob("*.so")]
    assert built, f"no op was built under {extensions}"
