"""The one answer parser: reads option letters, tag blocks and boxes out of model output.

Training rewards (``training.rewards``) and evaluation read completions with these functions
only, so a reward and the metric reported for the same text cannot disagree. Each letter rule
is named after the code it reproduces, because the published protocols read letters
differently and a number is only comparable under its own rule:

- :func:`mmad_letter`: MMAD's official scorer (``GPT4Query.parse_answer``): the *last*
  standalone ``A``-``E`` in the whole response, else the option text closest to the response.
- :func:`think_letter`: EMIT's MMAD evaluation (``evaluate_batch_mmad_choice.py``): the
  *first* standalone ``A``-``E`` inside the last ``<answer>`` block (the whole text without one).
- :func:`anomalyr1_choice`: AnomalyR1's ``extract_choice`` keyword-and-position heuristic,
  which its ROAM reward applies to the think and the answer blocks.
- :func:`emit_choice`: EMIT's training reward (``CLSAccuracyORM_choice``): the first
  single-line ``<answer>`` block, normalised; the caller checks it against ``a``-``d``.
- :func:`answer_letter`: our rule for rewards: the first standalone letter of the last
  ``<answer>`` block, or a bare lower-case letter as the whole answer (AD-FM answers ``a``/``b``).

Every function accepts anything (a ``str``, ``None``, another object) and never raises: input
that is not a string, or holds nothing recognisable, gives the "nothing found" result (``None``,
``""`` or ``[]``, as each documents).

The rules live in :mod:`~iad_pipeline.answers.letters`, the tag blocks they read in
:mod:`~iad_pipeline.answers.tags`, boxes in :mod:`~iad_pipeline.answers.boxes`; import them
from here.
"""

from iad_pipeline.answers.boxes import boxes_from_text
from iad_pipeline.answers.letters import (
    anomalyr1_choice,
    answer_letter,
    chosen_option,
    emit_choice,
    emit_normalise,
    mmad_letter,
    think_letter,
)
from iad_pipeline.answers.tags import answer_text, completion_text, first_tag, last_tag, tag_blocks

__all__ = [
    "anomalyr1_choice",
    "answer_letter",
    "answer_text",
    "boxes_from_text",
    "chosen_option",
    "completion_text",
    "emit_choice",
    "emit_normalise",
    "first_tag",
    "last_tag",
    "mmad_letter",
    "tag_blocks",
    "think_letter",
]
