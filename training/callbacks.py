"""What a training stage prints while it runs: a progress bar and one table line per log.

Plain ``transformers`` callbacks; the stages remove the stock ``ProgressCallback`` (it prints
every log dictionary) and add :class:`QuietProgress` with the table of their stage:
:class:`RewardLog` for GRPO, :class:`LossLog` for SFT. Only rank 0 prints.
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback


class QuietProgress(ProgressCallback):
    """The stock progress bar without the raw log dictionaries (the table shows them)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


class RewardLog(TrainerCallback):
    """One line per logged GRPO step: step, mean reward, its std, the zero-variance share and
    each reward's mean (a header line first)."""

    def __init__(self) -> None:
        self.header_done = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return control
        per_reward = {
            k.split("/")[1]: v
            for k, v in logs.items()
            if k.startswith("rewards/") and k.endswith("/mean")
        }
        if not self.header_done:
            names = "".join(f"{n[:14]:>15}" for n in per_reward)
            print(f"{'step':>6}{'reward':>10}{'std':>8}{'zero-var':>10}{names}", flush=True)
            self.header_done = True
        zero = logs.get("frac_zero_variance_groups", logs.get("frac_reward_zero_std", 0))
        values = "".join(f"{v:>15.3f}" for v in per_reward.values())
        print(
            f"{state.global_step:>6}{logs['reward']:>10.3f}"
            f"{logs.get('reward_std', 0):>8.3f}{zero:>10.2f}{values}",
            flush=True,
        )
        return control


class LossLog(TrainerCallback):
    """One line per logged SFT step: step, loss, mean token accuracy (a header line first)."""

    def __init__(self) -> None:
        self.header_done = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return control
        if not self.header_done:
            print(f"{'step':>6}{'loss':>10}{'token acc':>11}", flush=True)
            self.header_done = True
        acc = logs.get("mean_token_accuracy", float("nan"))
        print(f"{state.global_step:>6}{logs['loss']:>10.4f}{acc:>11.3f}", flush=True)
        return control


def use_table_callbacks(trainer, table: TrainerCallback) -> None:
    """Replace the trainer's stock progress printer by :class:`QuietProgress` and ``table``."""
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    trainer.add_callback(table)
