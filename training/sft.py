"""The SFT stage: TRL's ``SFTTrainer`` on the training set's prompts, the reference answer as
the completion, written in the recipe's answer format.

A recipe with ``stages: [sft, grpo]`` warms the model up with supervised fine-tuning before
GRPO: each training question becomes ``prompt`` (the same structured prompt GRPO sees, with its
images) and ``completion`` (the assistant's answer in the style's format, e.g.
``<think></think><answer>B</answer>`` for EMIT's questions). The loss covers the completion
only (TRL's ``completion_only_loss`` for prompt/completion data).

What trains (``sft.trainable``):

- ``all`` (the default without an adapter): every weight;
- ``adapter`` (the default with ``peft``): the LoRA adapter only;
- ``projector``: the vision-to-text merger (``visual.merger``) only; with ``peft``, the adapter
  plus the merger (PEFT's ``modules_to_save``);
- a list of module-name prefixes (``model.visual.merger``, ``model.language_model.layers.1``):
  those modules only; with ``peft``, the adapter plus those modules;
- ``emit_module``: EMIT's stage 1, the soft prompt and the heat-map projector only (the model
  frozen, no adapter; needs the recipe's ``emit_module`` block).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from training.arguments import peft_config, trainer_fields
from training.callbacks import LossLog, use_table_callbacks
from training.config import Recipe

log = logging.getLogger("training.sft")

PROJECTOR = "visual.merger"
# The completion each style's prompt asks for; {answer} is the reference letter.
ANSWER_FORMATS = {
    "emit": "<think></think><answer>{answer}</answer>",
    "anomalyr1": "<think></think><answer>{answer}</answer>",
    "mmad": "{answer}",
    "lr_iad": "<think></think> <answer>{answer}</answer>",
    "adfm": "<think></think><rethink></rethink><answer>{answer}</answer>",
}


_OPTION_LINE = re.compile(r"^([A-E])\.\s*(.*?)\s*$", re.MULTILINE)


def answer_completion(style: str, answer: str, think: str = "") -> str:
    """The reference completion of one question in its style's answer format, with ``think``
    as the text of its first think block (empty by default).

    >>> answer_completion("emit", "B")
    '<think></think><answer>B</answer>'
    >>> answer_completion("emit", "B", "No")
    '<think>No</think><answer>B</answer>'
    """
    if style not in ANSWER_FORMATS:
        msg = f"no SFT answer format for question style {style!r}; known: {sorted(ANSWER_FORMATS)}"
        raise ValueError(msg)
    text = ANSWER_FORMATS[style].format(answer=answer)
    if think and "<think></think>" not in text:
        msg = (
            f"sft.think: style {style!r} answers without a think block ({ANSWER_FORMATS[style]!r})"
        )
        raise ValueError(msg)
    return text.replace("<think></think>", f"<think>{think}</think>", 1) if think else text


def option_text(prompt_text: str, letter: str) -> str:
    r"""The text of option ``letter`` in a rendered question (its last ``X. text`` line, the
    trailing full stop dropped); ``""`` when the prompt has no such option.

    >>> option_text("Question: Any defect?\nA. Yes.\nB. No.\n", "B")
    'No'
    """
    found = [t for x, t in _OPTION_LINE.findall(prompt_text) if x == letter]
    return found[-1].removesuffix(".") if found else ""


def _prompt_text(prompt) -> str:
    """The user turns' text of a structured or plain prompt."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for turn in prompt:
        content = turn.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [b.get("text") or "" for b in content or [] if b.get("type") == "text"]
    return "\n".join(parts)


def reference_think(row: dict, think: str) -> str:
    """What a row's reference think block says under ``sft.think``: nothing (``empty``), or
    the text of the correct option (``option``: the model states its finding, e.g. ``Yes``,
    and then answers with the letter the shuffled options give it)."""
    if think == "option":
        return option_text(_prompt_text(row["prompt"]), row["solution"])
    return ""


def to_sft(dataset, think: str = "empty"):
    """GRPO's rows (``prompt``, ``images``, ``solution``, ``style``) as SFT's prompt/completion;
    ``think`` (``sft.think``) fills the reference think block."""

    def add_completion(row: dict) -> dict:
        text = answer_completion(row["style"], row["solution"], reference_think(row, think))
        return {"completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}]}

    keep = {"prompt", "images", "completion"}
    out = dataset.map(add_completion)
    return out.remove_columns([c for c in out.column_names if c not in keep])


def trainable_names(model, trainable: str | tuple[str, ...]) -> list[str]:
    """Parameter names that ``trainable`` selects (``all``, ``projector`` or prefixes)."""
    names = [n for n, _ in model.named_parameters()]
    if trainable == "all":
        return names
    prefixes = (PROJECTOR,) if trainable == "projector" else tuple(trainable)
    chosen = [n for n in names if any(p in n for p in prefixes)]
    if not chosen:
        msg = f"sft.trainable {trainable!r} selects no parameter of the model"
        raise ValueError(msg)
    return chosen


def freeze(model, trainable: str | tuple[str, ...]) -> int:
    """Train only the parameters ``trainable`` selects; returns how many weights train."""
    chosen = set(trainable_names(model, trainable))
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
        count += param.numel() if name in chosen else 0
    return count


def effective_trainable(recipe: Recipe) -> str | tuple[str, ...]:
    """``sft.trainable`` with its default resolved (``adapter`` with peft, else ``all``)."""
    if recipe.sft.trainable is not None:
        return recipe.sft.trainable
    return "adapter" if recipe.peft.method != "none" else "all"


def sft_peft_config(recipe: Recipe):
    """The LoRA config of the SFT stage, with ``modules_to_save`` for projector / prefixes."""
    trainable = effective_trainable(recipe)
    if trainable == "emit_module":  # EMIT's stage 1: the MLLM frozen, no adapter at all
        return None
    config = peft_config(recipe)
    if config is not None and trainable != "adapter":
        prefixes = [PROJECTOR] if trainable == "projector" else list(trainable)
        config.modules_to_save = [p.rsplit(".", 1)[-1] for p in prefixes]
    return config


def sft_config(recipe: Recipe, output: Path, max_steps: int | None, seed: int):
    from trl import SFTConfig

    fields = {
        **trainer_fields(recipe, output, seed),
        "max_length": None,  # truncation would cut image tokens
        **recipe.sft.args,
    }
    if max_steps is not None:
        fields["max_steps"] = max_steps
    return SFTConfig(**fields)


def build_sft_trainer(recipe: Recipe, model, processor, dataset, config):
    """``SFTTrainer`` for the recipe's SFT stage, with the DONE marker and the loss table."""
    from trl import SFTTrainer

    from training.checkpoints import DoneMarker

    peft = sft_peft_config(recipe)
    if peft is None and effective_trainable(recipe) != "emit_module":
        # (emit_module: training.emit_stages.prepare_model froze all but the module)
        n = freeze(model, effective_trainable(recipe))
        log.info("sft: %s trainable parameters (%s)", f"{n:,}", effective_trainable(recipe))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=to_sft(dataset, recipe.sft.think),
        processing_class=processor,
        peft_config=peft,
    )
    trainer.add_callback(DoneMarker(recipe.name, "sft"))
    use_table_callbacks(trainer, LossLog())
    return trainer


def _greedy_among(model, processor, tok, row, prompt: str, texts: list[str]) -> int:
    """Index of the continuation of ``prompt`` among ``texts`` the model prefers: the texts
    are tokenised whole (the tiny BPE merges across seams: ``>A`` against ``>B``) and scored
    by the logit of their token at the first position where they differ."""
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    split = 0
    while all(len(i) > split for i in ids) and len({i[split] for i in ids}) == 1:
        split += 1
    if not all(len(i) > split for i in ids):
        msg = f"continuations {texts!r} do not differ in a token of their own"
        raise ValueError(msg)
    prefix = tok.decode(ids[0][:split])
    enc = processor(text=[prompt + prefix], images=[row["images"]], return_tensors="pt")
    logits = model(**enc).logits[0, -1]
    scores = [logits[i[split]].item() for i in ids]
    return scores.index(max(scores))


def letter_accuracy(model, processor, rows, think: str = "empty") -> float:
    """Share of ``rows`` (``prompt``, ``images``, ``solution``, ``style``) whose solution letter
    the model prefers, greedy on the choice between the reference completions: with ``think``
    ``empty`` among the letters seen after an empty think block; with ``option`` (``sft.think``)
    the model first picks its finding among the question's option texts, then the letter after
    its own finding, as it answers when it generates."""
    import torch

    tok = processor.tokenizer
    letters = sorted(set(rows["solution"]))
    model.eval()
    correct = 0
    with torch.no_grad():
        for row in rows:
            prompt = processor.apply_chat_template(row["prompt"], add_generation_prompt=True)
            said = ""
            if think == "option":
                text = _prompt_text(row["prompt"])
                words = sorted({option_text(text, x) for x in letters} - {""})
                finds = [answer_completion(row["style"], letters[0], w) for w in words]
                said = words[_greedy_among(model, processor, tok, row, prompt, finds)]
            texts = [answer_completion(row["style"], x, said) for x in letters]
            pick = _greedy_among(model, processor, tok, row, prompt, texts)
            correct += letters[pick] == row["solution"]
    model.train()
    return correct / len(rows)
