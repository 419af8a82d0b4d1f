"""Evaluation protocols: which templates, knowledge, wording and rendering a question gets.

A :class:`Protocol` names one way of asking MMAD's questions; :func:`eval.prompting.build_prompt`
turns a question row into the :class:`~eval.prompting.PromptSpec` a backend answers under it.
Each named protocol (:data:`PROTOCOLS`) reproduces its authors' released code, read at
jam-cc/MMAD ``bad03b44c30fdb4d0e1774e07e0f245fbaae3b6c`` and guanwei49/EMIT
``01dc319236eda9be13e14918cf9a5bf0d5c7a030``; every deliberate difference is a field whose
default is the authors' behaviour.

``mmad`` (``evaluation/examples/Transformers/qwen2_5_vl_query.py``): the text comes from the
one prompt renderer, :func:`iad_pipeline.questions.prompts.render_prompt` (style ``mmad``), so
evaluation asks exactly what training shows. MMAD's payload, in order:

1. the instruction, 2. ``"Answer with the option's letter from the given choices directly! "``,
3. the domain knowledge (``knowledge=True``; MMAD gives it to every type),
4. ``"Following is/are {k} image of normal sample, ..."`` and the ``k`` template images
   (``shots=k``; none for 0-shot; an image with fewer templates gets those it has, as
   MMAD's ``templates[:k]``), 5. ``"Following is the query image: "`` and the query image,
6. ``"Following is the question list: "``, 7. ``"Question {i}: {question} \\nA. ...\\n"``,

rendered with ``add_vision_id=True`` and images within 64-1280 x 28 x 28 pixels.
``render_prompt`` writes the 1-shot sentence; for ``k > 1`` the sentence is rewritten from
:data:`~iad_pipeline.questions.prompts.MMAD_TEMPLATE_INTRO` with MMAD's ``k`` and followed by
``k`` image markers, as MMAD's loop over ``few_shot`` does. The published 1-shot numbers most
likely used ``random_templates[0]`` (``Protocol()``).

``emit_think`` / ``emit_direct`` (``evaluate_batch_mmad_choice.py``): EMIT's own prompt
(:data:`~iad_pipeline.questions.prompts.EMIT_EVAL_TWO_IMAGE` and ``..._ONE_IMAGE``), see
:func:`_emit_preset` (the text: :func:`eval.prompting.build_prompt`).

Options keep their order unless ``shuffle_options``, which re-letters them with an RNG seeded
by ``seed`` and the question id, so a resumed run shuffles every question exactly as the first
attempt did. :meth:`Protocol.record` lists every setting; it is stored with every result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from eval.errata import load_errata
from iad_pipeline.errors import IadError
from iad_pipeline.questions import prompts as P

TemplateKind = Literal["random", "similar"]
AnswerRule = Literal["mmad", "think"]
Style = Literal["mmad", "emit"]
Form = Literal["full", "question"]
FORMS = ("full", "question")
MmadVersion = Literal["original", "corrected"]
TEMPLATE_KINDS = ("random", "similar")
ANSWER_RULES = ("mmad", "think")
STYLES = ("mmad", "emit")
MMAD_VERSIONS = ("original", "corrected")
# How each answer rule reads a response (recorded with every result).
PARSERS = {
    "mmad": "mmad_letter: last standalone A-E (GPT4Query.parse_answer), else closest option",
    "think": "think_letter: first standalone A-E of the last <answer> block (EMIT)",
}
# EMIT's evaluation gives Object questions no domain knowledge (raw and merged type names).
OBJECT_TYPES = ("Object Classification", "Object Structure", "Object Details", "Object Analysis")


class ProtocolError(IadError, ValueError):
    """A protocol that cannot be built, or a question it cannot be asked with."""


@dataclass(frozen=True)
class Protocol:
    """How questions are asked: shots and template list, knowledge, option order, answer rule.

    Args:
        shots: template images before the query (MMAD's ``--few_shot_model``; 0 = none).
        template: ``"random"`` (``random_templates``, the published numbers) or ``"similar"``
            (``similar_templates``, EMIT's evaluation).
        knowledge: add the category's domain knowledge.
        knowledge_skip_types: question types (raw or merged) asked without knowledge; MMAD
            gives it to every type (``()``), EMIT skips the Object ones (:data:`OBJECT_TYPES`).
        shuffle_options: re-letter the options in a seeded random order.
        seed: seed of the shuffle.
        answer_rule: how ``gpt_answer`` is read: ``"mmad"`` (last standalone letter) or
            ``"think"`` (the letter inside the last ``<answer>`` block).
        style: ``"mmad"`` (MMAD's Qwen2.5-VL payload) or ``"emit"`` (EMIT's evaluation
            prompt; ``think`` picks its think or direct instruction).
        min_pixels, max_pixels: the image processor's pixel bounds (MMAD's 64 and 1280 x 28 x
            28 by default; ``None`` keeps the processor's own).
        add_vision_id: render with ``add_vision_id`` ("Picture 1: " before each image; MMAD).
        system_prompt: a system message (``None``: the chat template's default, as MMAD).
        mmad_version: ``"original"`` or ``"corrected"`` (the errata applied, see
            :mod:`eval.errata`).
        template_shortfall: an image with fewer templates than ``shots`` is asked with those
            it has (``"fewer"``, MMAD's ``templates[:k]``) or refused (``"error"``).
        form: ``"full"`` (the style's own prompt) or ``"question"``: the style's images and
            the question with its options alone, no instruction or knowledge
            (:func:`~iad_pipeline.questions.prompts.question_only`; a recipe's
            ``prompt: question``). Ours, not a benchmark's protocol; named ``+question_only``.

    Each default is the authors' behaviour for the ``mmad`` style; :data:`PROTOCOLS` names
    the presets (``mmad``, ``emit_think``, ``emit_direct``).

    Example:
        >>> Protocol().name, Protocol(shots=0).name
        ('1shot-random', '0shot')
        >>> Protocol(template="similar", knowledge=True).name
        '1shot-similar+knowledge'
        >>> Protocol(shots=2, shuffle_options=True, seed=3, answer_rule="think").name
        '2shot-random+shuffle3+think'
    """

    shots: int = 1
    template: TemplateKind = "random"
    knowledge: bool = False
    knowledge_skip_types: tuple[str, ...] = ()
    shuffle_options: bool = False
    seed: int = 0
    answer_rule: AnswerRule = "mmad"
    style: Style = "mmad"
    think: bool = False
    min_pixels: int | None = P.MMAD_MIN_PIXELS
    max_pixels: int | None = P.MMAD_MAX_PIXELS
    add_vision_id: bool = True
    system_prompt: str | None = None
    mmad_version: MmadVersion = "original"
    template_shortfall: Literal["fewer", "error"] = "fewer"
    form: Form = "full"

    def __post_init__(self) -> None:
        if isinstance(self.shots, bool) or not isinstance(self.shots, int) or self.shots < 0:
            msg = f"Protocol: shots={self.shots!r}; expected an integer >= 0"
            raise ProtocolError(msg)
        if self.template not in TEMPLATE_KINDS:
            msg = f"Protocol: template={self.template!r}; expected one of {TEMPLATE_KINDS}"
            raise ProtocolError(msg)
        if self.answer_rule not in ANSWER_RULES:
            msg = f"Protocol: answer_rule={self.answer_rule!r}; expected one of {ANSWER_RULES}"
            raise ProtocolError(msg)
        if self.template_shortfall not in ("fewer", "error"):
            msg = (
                f"Protocol: template_shortfall={self.template_shortfall!r}; expected 'fewer' "
                "(MMAD: ask with the templates there are) or 'error'"
            )
            raise ProtocolError(msg)
        if self.style not in STYLES:
            msg = f"Protocol: style={self.style!r}; expected one of {STYLES}"
            raise ProtocolError(msg)
        if self.form not in FORMS:
            msg = f"Protocol: form={self.form!r}; expected one of {FORMS}"
            raise ProtocolError(msg)
        if self.form == "question" and self.knowledge:
            msg = "Protocol: form='question' asks without domain knowledge; set knowledge=False"
            raise ProtocolError(msg)
        if self.mmad_version not in MMAD_VERSIONS:
            msg = f"Protocol: mmad_version={self.mmad_version!r}; expected one of {MMAD_VERSIONS}"
            raise ProtocolError(msg)
        if self.style == "emit" and self.shots not in (0, 1):
            msg = f"Protocol: style='emit' asks with 0 or 1 template, found shots={self.shots}"
            raise ProtocolError(msg)
        for what in ("min_pixels", "max_pixels"):
            value = getattr(self, what)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                msg = f"Protocol: {what}={value!r}; expected a number of pixels or None"
                raise ProtocolError(msg)
        object.__setattr__(self, "knowledge_skip_types", tuple(self.knowledge_skip_types))

    @property
    def name(self) -> str:
        """A stable name: everything that changes what is asked or how it is read.

        Settings that differ from the style's own (see :data:`PROTOCOLS`) are spelt out;
        :meth:`record` lists every setting and :attr:`key` hashes them all.
        """
        base = PROTOCOLS["mmad"] if self.style == "mmad" else _emit_preset(self.think)
        name = "" if self.style == "mmad" else f"emit_{'think' if self.think else 'direct'}-"
        name += f"{self.shots}shot" + (f"-{self.template}" if self.shots else "")
        if self.knowledge:
            name += "+knowledge"
            if self.knowledge_skip_types != base.knowledge_skip_types:
                skip = "|".join(sorted(self.knowledge_skip_types))
                name += "-skip" + hashlib.sha1(skip.encode("utf-8")).hexdigest()[:6]
        if self.shuffle_options:
            name += f"+shuffle{self.seed}"
        if self.answer_rule != base.answer_rule:
            name += f"+{self.answer_rule}"
        if (self.min_pixels, self.max_pixels) != (base.min_pixels, base.max_pixels):
            name += f"+px{self.min_pixels or 'default'}-{self.max_pixels or 'default'}"
        if self.add_vision_id != base.add_vision_id:
            name += "+vision_id" if self.add_vision_id else "+no_vision_id"
        if self.system_prompt != base.system_prompt:
            name += "+system" + _short_hash(self.system_prompt or "")
        if self.template_shortfall != "fewer" and self.style == "mmad" and self.shots:
            name += "+all_shots"
        if self.mmad_version != "original":
            name += f"+mmad_{self.mmad_version}"
        if self.form != "full":
            name += "+question_only"
        return name

    @property
    def key(self) -> str:
        """:attr:`name` and a hash of :meth:`record`: a changed protocol text is a new run."""
        return f"{self.name}@{_short_hash(json.dumps(self.record(), sort_keys=True))}"

    def record(self, model_revision: str | None = None) -> dict[str, Any]:
        """Everything that decides a number, as stored with every result (run.json, runs row).

        Keys: ``protocol`` (:attr:`name`), ``style``, ``shots``, ``template_rule``,
        ``knowledge_rule``, ``min_pixels``, ``max_pixels``, ``add_vision_id``, ``parser``,
        ``prompt_template_hash`` (of the protocol strings the style renders with), ``system``,
        ``model_revision`` (given by the caller) and ``mmad_version``.

        Example:
            >>> r = Protocol().record()
            >>> r["protocol"], r["template_rule"], r["knowledge_rule"], r["max_pixels"]
            ('1shot-random', 'random_templates[:1]', 'none', 1003520)
            >>> Protocol(knowledge=True).record()["knowledge_rule"]
            'all types'
        """
        if not self.knowledge:
            knowledge_rule = "none"
        elif self.knowledge_skip_types:
            knowledge_rule = "all types but " + ", ".join(sorted(self.knowledge_skip_types))
        else:
            knowledge_rule = "all types"
        if self.style == "emit" and self.shots:
            template_rule = f"{self.template}_templates[0], Anomaly Detection and Defect only"
        elif self.shots:
            template_rule = f"{self.template}_templates[:{self.shots}]"
            if self.template_shortfall == "error":
                template_rule += f", exactly {self.shots}"
        else:
            template_rule = "none"
        return {
            "protocol": self.name,
            "style": self.style,
            "shots": self.shots,
            "template_rule": template_rule,
            "knowledge_rule": knowledge_rule,
            "option_order": f"shuffled, seed {self.seed}" if self.shuffle_options else "as given",
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "add_vision_id": self.add_vision_id,
            "parser": PARSERS[self.answer_rule],
            "prompt_template_hash": prompt_template_hash(self.style, self.think, self.form),
            "system": self.system_prompt,
            "model_revision": model_revision,
            "mmad_version": self.mmad_version,
            "errata_version": _errata_version() if self.mmad_version == "corrected" else None,
            # only when not the style's own prompt: the full form's keys (and cached runs) stay
            **({"prompt_form": self.form} if self.form != "full" else {}),
        }


def _errata_version() -> int:
    return load_errata()[0]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def prompt_template_hash(style: str, think: bool = False, form: str = "full") -> str:
    """A short hash of the protocol strings a style renders with (changes when they do)."""
    if form == "question":  # the form's own rendering, options' full stops included
        return _short_hash(P.question_only("{question} \nA. {a}\nB. {b}.\n", 2))
    if style == "mmad":
        parts = [
            P.MMAD_INSTRUCTION_TEXT,
            P.MMAD_ANSWER_DIRECTLY,
            P.MMAD_KNOWLEDGE,
            P.MMAD_TEMPLATE_INTRO,
            P.MMAD_QUERY_INTRO,
            P.MMAD_QUESTION_LIST,
            P.MMAD_QUESTION,
            P.MMAD_OPTION,
        ]
    else:
        parts = [
            P.EMIT_EVAL_TWO_IMAGE,
            P.EMIT_EVAL_ONE_IMAGE,
            P.EMIT_EVAL_KNOWLEDGE,
            P.EMIT_EVAL_THINK if think else P.EMIT_EVAL_DIRECT,
        ]
    return _short_hash("\x00".join(parts))


def _emit_preset(think: bool) -> Protocol:
    """EMIT's evaluation (``evaluate_batch_mmad_choice.py``, EMIT ``01dc319``) on Qwen2.5-VL.

    One ``similar_templates[0]`` and the domain knowledge for Anomaly Detection and Defect
    questions, the query alone without knowledge for Object questions, options in their
    order, the think or direct instruction, EMIT's system prompt (``sysprompt.txt``), answers
    read by the last ``<answer>`` block's first letter. EMIT's model was InternVL3 (448-pixel
    tiles); on Qwen2.5-VL the pixel bounds of EMIT's own Qwen harness
    (``eval_benchmark/evaluate_batch_mmad_choice_QWEN.py``) apply, without vision ids.
    """
    return Protocol(
        shots=1,
        template="similar",
        knowledge=True,
        knowledge_skip_types=OBJECT_TYPES,
        answer_rule="think",
        style="emit",
        think=think,
        min_pixels=P.EMIT_QWEN_MIN_PIXELS,
        max_pixels=P.EMIT_QWEN_MAX_PIXELS,
        add_vision_id=False,
        system_prompt=P.EMIT_SYSTEM_PROMPT,
    )


def protocol_named(name: str, **changes: Any) -> Protocol:
    """The protocol called ``name`` (a key of :data:`PROTOCOLS`) with ``changes`` applied.

    >>> protocol_named("mmad", knowledge=True).name
    '1shot-random+knowledge'
    >>> protocol_named("emit_think").name
    'emit_think-1shot-similar+knowledge'
    >>> protocol_named("gpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eval.protocols.ProtocolError: unknown protocol 'gpt'; valid protocols: emit_direct, ...
    """
    if name not in PROTOCOLS:
        msg = f"unknown protocol {name!r}; valid protocols: {', '.join(sorted(PROTOCOLS))}"
        raise ProtocolError(msg)
    return replace(PROTOCOLS[name], **changes)


# The named protocols, each with its authors' settings as defaults: ``mmad`` is MMAD's
# qwen2_5_vl_query.py (1-shot random template, knowledge only when asked and then for every
# type, vision ids, 64-1280 x 28 x 28 pixels); ``emit_think`` / ``emit_direct`` are EMIT's
# evaluate_batch_mmad_choice.py with and without --think (see _emit_preset).
PROTOCOLS: dict[str, Protocol] = {
    "mmad": Protocol(),
    "emit_think": _emit_preset(True),
    "emit_direct": _emit_preset(False),
}
