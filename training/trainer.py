"""Difficulty-aware GRPO (EMIT) as a thin subclass of TRL's ``GRPOTrainer``.

Guan et al., "EMIT: Enhancing MLLMs for Industrial Anomaly Detection via Difficulty-Aware
GRPO" (code: github.com/guanwei49/EMIT, ``grpo_Trainer.py`` on ms-swift).

EMIT adds two things to GRPO for questions the policy struggles with:

- **Advantage reweighting** (EMIT eq. 5-6). Per group of G completions of one prompt,
  ``w = 1 + n_wrong / G`` and every advantage of the group is multiplied by ``w``, after
  TRL's usual ``A = (R - mean_g) / (std_g + 1e-4)``. A completion is wrong when the accuracy
  reward is ``<= 0`` (or missing): EMIT's invalid-answer reward of -1 counts as wrong. For a
  group with no correct completion the paper's formula gives ``w = 2`` while EMIT's released
  code (``w = n_wrong / G; w[w == 1] = 0; w += 1``) gives ``w = 1``;
  ``DifficultyConfig.all_wrong_weight`` picks (default 1.0, the code).
- **Response resampling.** A group with no correct completion is regenerated, up to
  ``resample_rounds`` times (EMIT: 3); a new set with a correct completion replaces the old
  one. Only the failing groups' prompts are regenerated. EMIT drops groups that stay
  unsolved and refills the batch with copies of solved ones; ``mask_unsolved=True`` is the
  duplication-free approximation: their advantages become 0 and their completions leave the
  loss (``completion_mask`` zeroed, ``num_items_in_batch`` recounted, as TRL's
  ``mask_truncated_completions`` does).

What each override changes (TRL 1.16 computes advantages inline, there is no hook for them):

- ``_calculate_rewards``: unchanged, but keeps the gathered reward matrix for the step.
- ``_generate``: after TRL's generation, scores the local completions with the accuracy
  reward and regenerates unsolved groups (train mode only). Generation is collective (TRL
  gathers lengths; DeepSpeed ZeRO-3 gathers weights; vLLM gathers prompts), so every rank
  makes the same calls with the same sizes: each round the ranks agree on the largest count
  of failing groups, and a rank with fewer pads its batch with copies of its own groups,
  whose completions it discards. Extra ``completions/*`` metrics of the resampling calls are
  dropped, so those describe the first draw; ``num_tokens`` counts every generated token.
- ``_generate_and_score_completions``: after TRL's, multiplies ``advantages`` by the group
  weights (the logged completions table too), masks unsolved groups if asked, and logs
  ``frac_zero_variance_groups`` (AD-FM's data-utilisation figure: groups whose total reward
  has zero variance, so no gradient), ``difficulty/mean_weight``,
  ``difficulty/resample_rounds``, ``difficulty/resampled_groups`` and
  ``difficulty/unsolved_groups`` through TRL's ``_metrics`` (hence the console, reporters
  and ``trainer_state.json``). Per-reward means are TRL's ``rewards/<name>/mean``.

Requirements: resampling needs the accuracy reward to be a plain synchronous function, and
whole groups on each rank (``per_device_train_batch_size * steps_per_generation`` a multiple
of ``num_generations``); it does not support tools, environments or ``rollout_func``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import is_async_callable, nanstd

from training.config import DifficultyConfig

logger = logging.getLogger(__name__)


def difficulty_weights(correct: torch.Tensor, all_wrong_weight: float) -> torch.Tensor:
    """EMIT's group weights ``w = 1 + n_wrong / G`` (eq. 5) from a (groups, G) bool tensor.

    A group with no correct completion gets ``all_wrong_weight`` instead of 2.

    >>> c = torch.tensor([[True, False, False, False], [True] * 4, [False] * 4])
    >>> difficulty_weights(c, all_wrong_weight=1.0).tolist()
    [1.75, 1.0, 1.0]
    >>> difficulty_weights(c, all_wrong_weight=2.0).tolist()
    [1.75, 1.0, 2.0]
    """
    group_size = correct.shape[1]
    n_wrong = (~correct).sum(dim=1).float()
    weights = 1.0 + n_wrong / group_size
    return torch.where(n_wrong == group_size, torch.full_like(weights, all_wrong_weight), weights)


def _discard(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``log_extra``/``log_metric`` while resampling scores drafts."""


class DifficultyAwareGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with EMIT's advantage reweighting and response resampling.

    Takes every ``GRPOTrainer`` argument plus ``difficulty`` (a ``DifficultyConfig``, default
    ``DifficultyConfig()``). See the module docstring for the formula, the EMIT code-versus-
    paper choice and what each overridden hook changes.
    """

    def __init__(self, *args: Any, difficulty: DifficultyConfig | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.difficulty = difficulty if difficulty is not None else DifficultyConfig()
        self._accuracy_index = self._resolve_accuracy_reward(self.difficulty.accuracy_reward)
        if self.difficulty.resample_rounds > 0:
            self._check_resampling_supported()
        self._batch_inputs: list[dict[str, Any]] | None = None
        self._batch_rewards: torch.Tensor | None = None
        self._resample_log = (0, 0)  # (rounds, groups resampled) of the current batch

    # -- set-up checks ---------------------------------------------------------------------

    def _resolve_accuracy_reward(self, key: str | int) -> int:
        names = list(self.reward_func_names)
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(names):
            return key
        if isinstance(key, str) and key in names:
            return names.index(key)
        msg = (
            f"accuracy_reward={key!r} names no reward function; expected an index below "
            f"{len(names)} or one of {names}"
        )
        raise ValueError(msg)

    def _check_resampling_supported(self) -> None:
        func = self.reward_funcs[self._accuracy_index]
        name = self.reward_func_names[self._accuracy_index]
        if isinstance(func, torch.nn.Module) or is_async_callable(func):
            msg = (
                f"resampling scores drafts with the accuracy reward {name!r}, which must be a "
                "plain synchronous function (got a model or an async function); "
                "set resample_rounds=0 or pass a function"
            )
            raise ValueError(msg)
        if self.tools or self.environment_factories is not None or self.rollout_func is not None:
            msg = (
                "resampling supports no tools, environments or rollout_func; set resample_rounds=0"
            )
            raise ValueError(msg)
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if local % self.num_generations:
            msg = (
                f"resampling needs whole groups on each process, but a process generates {local} "
                f"completions (per_device_train_batch_size * steps_per_generation), not a multiple "
                f"of num_generations={self.num_generations}; change one of them"
            )
            raise ValueError(msg)

    # -- overridden hooks ------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._batch_rewards = rewards
        return rewards

    def _generate(self, prompts: list):
        result = super()._generate(prompts)
        resample = (
            self.difficulty.resample_rounds > 0
            and self.model.training
            and self._batch_inputs is not None
            and len(self._batch_inputs) == len(prompts)
        )
        return self._resample_unsolved(prompts, result) if resample else result

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_inputs, self._batch_rewards, self._resample_log = inputs, None, (0, 0)
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._batch_inputs = None
        self._apply_difficulty(output, n_local=len(inputs))
        return output

    # -- reweighting and masking -----------------------------------------------------------

    def _apply_difficulty(self, output: dict[str, Any], n_local: int) -> None:
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._batch_rewards  # (B_global, n_funcs), every process's rows
        correct = (rewards[:, self._accuracy_index] > 0).view(-1, group_size)  # NaN -> wrong
        unsolved = ~correct.any(dim=1)
        if self.difficulty.reweight:
            weights = difficulty_weights(correct, self.difficulty.all_wrong_weight)
        else:
            weights = torch.ones(correct.shape[0], device=rewards.device)
        row_weights = weights.repeat_interleave(group_size)
        if self.difficulty.mask_unsolved:
            row_weights = row_weights * (~unsolved).repeat_interleave(group_size)

        start = self.accelerator.process_index * n_local
        local = row_weights[start : start + n_local].to(output["advantages"].device)
        advantages = output["advantages"]
        output["advantages"] = advantages * (local if advantages.dim() == 1 else local.unsqueeze(1))
        logged = self._logs["advantages"]  # a deque; TRL appended this batch's advantages last
        tail = min(len(logged), len(row_weights))
        for i, w in enumerate(row_weights[len(row_weights) - tail :].tolist()):
            logged[len(logged) - tail + i] *= w

        if self.difficulty.mask_unsolved and bool(unsolved.any()):  # same on every rank
            keep = ~unsolved.repeat_interleave(group_size)[start : start + n_local]
            mask = output["completion_mask"]
            output["completion_mask"] = mask * keep.to(mask.device).unsqueeze(1).int()
            loss_mask = output["completion_mask"]
            if "tool_mask" in output:
                loss_mask = loss_mask * output["tool_mask"]
            output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        self._log_difficulty(mode, rewards, weights, unsolved)

    def _log_difficulty(
        self, mode: str, rewards: torch.Tensor, weights: torch.Tensor, unsolved: torch.Tensor
    ) -> None:
        """Append this batch's figures to TRL's metrics (averaged per logging step)."""
        total = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
        spread = nanstd(total.view(len(weights), -1), dim=1)
        zero_var = torch.isclose(spread, torch.zeros_like(spread))
        rounds, resampled = self._resample_log
        metrics = self._metrics[mode]
        metrics["frac_zero_variance_groups"].append(zero_var.float().mean().item())
        metrics["difficulty/mean_weight"].append(weights.mean().item())
        metrics["difficulty/resample_rounds"].append(float(rounds))
        metrics["difficulty/resampled_groups"].append(float(resampled))
        metrics["difficulty/unsolved_groups"].append(float(unsolved.sum().item()))

    # -- resampling ------------------------------------------------------------------------

    def _correct(self, rows: list[int], prompts: list, completions: list, ids: list) -> list[bool]:
        """Accuracy reward ``> 0`` for completions of the batch rows ``rows`` (local indices)."""
        func = self.reward_funcs[self._accuracy_index]
        examples = [self._batch_inputs[r] for r in rows]
        keys = [k for k in examples[0] if k not in ("prompt", "completion", "completion_ids")]
        kwargs = {k: [x[k] for x in examples] for k in keys}
        rewards = func(
            prompts=prompts,
            completions=completions,
            completion_ids=ids,
            trainer_state=self.state,
            log_extra=_discard,
            log_metric=_discard,
            **kwargs,
        )
        return [r is not None and r > 0 for r in rewards]

    def _resample_unsolved(self, prompts: list, result: tuple) -> tuple:
        group_size = self.num_generations
        n_groups, rest = divmod(len(prompts), group_size)
        if rest:
            msg = f"{len(prompts)} completions on this process are not whole groups of {group_size}"
            raise ValueError(msg)
        # TRL's (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields,
        # images, tool_images): rows of prompt_ids, completion_ids, completions and logprobs
        # are spliced; the rest carry nothing per draw (tools and rollout_func are ruled out).
        result = list(result)
        prompt_ids, ids, completions = (list(x) for x in (result[0], result[1], result[3]))
        logprobs = None if result[4] is None else list(result[4])
        correct = self._correct(list(range(len(prompts))), prompts, completions, ids)
        failing = [g for g in range(n_groups) if not any(correct[self._rows(g)])]
        n_failing_first = len(failing)
        metrics = self._metrics["train"]
        first_draw = {key: len(values) for key, values in metrics.items()}

        rounds = 0
        for _ in range(self.difficulty.resample_rounds):
            width = int(self._gather_count(len(failing)).max())
            if width == 0:
                break
            rounds += 1
            # Pad to the widest rank with this rank's own groups; padded drafts are discarded.
            groups = failing + [failing[0] if failing else 0] * (width - len(failing))
            rows = [r for g in groups for r in range(g * group_size, (g + 1) * group_size)]
            draft = super()._generate([prompts[r] for r in rows])
            d_prompt_ids, d_ids, _, d_completions, d_logprobs = draft[:5]
            d_correct = self._correct(rows, [prompts[r] for r in rows], d_completions, d_ids)
            still = []
            for k, g in enumerate(failing):
                block, target = self._rows(k), self._rows(g)
                if not any(d_correct[block]):
                    still.append(g)
                    continue
                prompt_ids[target], ids[target] = d_prompt_ids[block], d_ids[block]
                completions[target] = d_completions[block]
                if logprobs is not None:
                    logprobs[target] = d_logprobs[block]
            failing = still

        for key in list(metrics):
            if key not in first_draw:
                del metrics[key]
            elif key != "num_tokens":
                del metrics[key][first_draw[key] :]
        if rounds:
            resampled = int(self._gather_count(n_failing_first).sum())
            self._resample_log = (rounds, resampled)
            logger.debug("resampled %d groups in %d rounds", resampled, rounds)
        result[0], result[1], result[3], result[4] = prompt_ids, ids, completions, logprobs
        return tuple(result)

    def _rows(self, group: int) -> slice:
        """The local rows of group ``group`` (groups are contiguous, ``num_generations`` long)."""
        return slice(group * self.num_generations, (group + 1) * self.num_generations)

    def _gather_count(self, count: int) -> torch.Tensor:
        """Every process's ``count``, in process order (a collective: all ranks must call it)."""
        return self.accelerator.gather(torch.tensor([count], device=self.accelerator.device))
