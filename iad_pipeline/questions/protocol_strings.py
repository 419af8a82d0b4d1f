"""Benchmark protocol strings, verbatim: data, each with the repository, commit and file it was
reproduced from.

This is the only module that holds protocol text; the strings are data (a protocol is only
comparable when its words are the same). :data:`ADFM_PROMPT` and the text-sample prompts are
the exceptions, marked OUR OWN WORDING where they stand: the releases have no such prompt.
:mod:`iad_pipeline.questions.prompts` renders them (and re-exports every name, so
``from iad_pipeline.questions.prompts import MMAD_INSTRUCTION`` keeps working).
"""

from __future__ import annotations

IMAGE_PLACEHOLDER = "<image>"
LETTERS = "ABCDEFGH"

# --- MMAD (jam-cc/MMAD, read at commit bad03b44c30fdb4d0e1774e07e0f245fbaae3b6c) -------------
# Ambiguities of the release, and which reading we follow:
# - qwen2_5_vl_query.py imports `GPT4V.gpt4v` (the folder is GPT4) and calls
#   parse_conversation(text_gt, add_question_id=False), which the released gpt4v.py does not
#   accept (TypeError). We follow the code that runs, gpt4v.py: questions numbered
#   "Question {i}: " by their place in the image's conversation.
# - Qwen's content parts: apply_chat_template(..., add_vision_id=True), so every image is
#   preceded by "Picture {n}: "; min_pixels 64*28*28, max_pixels 1280*28*28; the processor's
#   default system prompt ("You are a helpful assistant.") stays; max_new_tokens 128, greedy.
# - `--domain_knowledge` gives the knowledge to every question type (EMIT skips Object ones).
# - The published 1-shot rows have no "_Similar_template" suffix: random_templates[0].
# - gpt4v.py (the GPT-4o rows) asks differently from the Qwen script: the instruction is a
#   system message, the template sentence is MMAD_GPT4_TEMPLATE_INTRO, there is no "Answer
#   ... directly! " part and no knowledge, question i is sent with questions 1..i (the last
#   letter of the answer is kept), images are JPEG <= 512x512 with detail "low", max_tokens 600.
# evaluation/examples/GPT4/gpt4v.py: `instruction`. The source is a triple-quoted literal, so
# the text the model sees starts and ends with a newline (MMAD_INSTRUCTION_TEXT).
MMAD_INSTRUCTION = (
    "You are an industrial inspector who checks products by images. You should judge whether "
    "there is a defect in the query image and answer the questions about it.\n"
    "Answer with the option's letter from the given choices directly."
)
MMAD_INSTRUCTION_TEXT = f"\n{MMAD_INSTRUCTION}\n"
# evaluation/examples/Transformers/qwen2_5_vl_query.py: QwenQuery.get_query, in payload order.
MMAD_ANSWER_DIRECTLY = "Answer with the option's letter from the given choices directly! "
MMAD_KNOWLEDGE = (
    "Following is the domain knowledge which contains some type of defect and the normal "
    "object characteristics: \n {dk}"
)
MMAD_TEMPLATE_INTRO = (
    "Following is/are {k} image of normal sample, which can be used as a template to compare "
    "the image being queried."
)
MMAD_QUERY_INTRO = "Following is the query image: "
MMAD_QUESTION_LIST = "Following is the question list: "
# evaluation/examples/GPT4/gpt4v.py: GPT4Query.parse_conversation (question line, then one
# "A. opt\n" line per option).
MMAD_QUESTION = "Question {i}: {question} \n"
MMAD_OPTION = "{letter}. {text}\n"
# evaluation/examples/GPT4/gpt4v.py: GPT4Query.get_query, the template sentence of the GPT-4o
# script (the Qwen script's MMAD_TEMPLATE_INTRO differs).
MMAD_GPT4_TEMPLATE_INTRO = (
    "Following is {k} image of normal sample, which can be used as a template to compare."
)
# evaluation/examples/Transformers/qwen2_5_vl_query.py: image size bounds of the processor.
MMAD_MIN_PIXELS = 64 * 28 * 28
MMAD_MAX_PIXELS = 1280 * 28 * 28

# evaluation/examples/helper/summary.py: the raw `type` strings of mmad.json and the seven
# reported columns (Object Structure and Object Details merged into Object Analysis).
MMAD_RAW_TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Structure",
    "Object Details",
)
MMAD_REPORTED_TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
MMAD_MERGED_TYPE = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}

# --- EMIT (guanwei49/EMIT) ------------------------------------------------------------------
# traindata_gen/make_jonsl.py: get_samples, the one-shot template ({} = domain knowledge, then
# the question).
EMIT_TWO_IMAGE_TEMPLATE = (
    "Image-1: <image>\nImage-2: <image>\nI have uploaded two images for review, each featuring "
    "a product. The product shown in the first image appears to be in perfect condition, free "
    "of any defects. To answer a multiple-choice question, please inspect the product in the "
    "second image. There is only one correct option.\nThe following provides domain knowledge "
    "regarding the characteristics of a normal product, as well as the various possible types "
    "of defects: {}\nSelect your answer by responding with the letter corresponding to the "
    "correct option, such as 'A'. Begin by documenting your analysis process within <think> "
    "</think> tags. Conclude with your final answer enclosed in <answer> </answer> tags. The "
    "final answer should be either 'A' or 'B' or 'C' or 'D'. The output format should be as "
    "follows: <think>...</think><answer>...</answer>. Please adhere strictly to the prescribed "
    "format.\n\nQuestion: {}"
)
# traindata_gen/make_jonsl.py: get_samples, the object-classification template.
EMIT_ONE_IMAGE_TEMPLATE = (
    "Query image: <image>\nTo answer a multiple-choice question, please inspect the product in "
    "the given image. There is only one correct option.\nSelect your answer by responding with "
    "the letter corresponding to the correct option, such as 'A'. Begin by documenting your "
    "analysis process within <think> </think> tags. Conclude with your final answer enclosed "
    "in <answer> </answer> tags. The final answer should be either 'A' or 'B' or 'C' or 'D'. "
    "The output format should be as follows: <think>...</think><answer>...</answer>. Please "
    "adhere strictly to the prescribed format.\n\nQuestion: {}"
)
# traindata_gen/make_jonsl.py: get_samples, one question per task ({options} = "A. x\nB. y").
EMIT_QUESTIONS = {
    "anomaly_detection": "Is there any defect in the object? \n{options}\n",
    "defect_classification": (
        "There is a defect in the object. What is the type of the defect? \n{options}\n"
    ),
    "defect_localization": "There is a defect in the object. Where is the defect? \n{options}\n",
    "object_classification": "What kind of product is in the image? \n{options}\n",
}
# traindata_gen/make_jonsl.py: anomaly_detection_choices.
EMIT_YES, EMIT_NO = "Yes.", "No."
# traindata_gen/make_jonsl.py: `regions`, the wordings of each 3x3 grid region.
EMIT_LOCATION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("Top left.", "Left top.", "Upper left.", "Left upper."),
    "top": ("Top.", "Top center.", "Summit."),
    "top right": ("Top right.", "Right top.", "Upper right.", "Right upper."),
    "left": ("Left.", "Leftward.", "Left-hand."),
    "center": ("Center.", "Middle."),
    "right": ("Right.", "Rightward.", "Right-hand."),
    "bottom left": ("Bottom left.", "Left bottom.", "Lower left.", "Left lower."),
    "bottom": ("Bottom.", "Bottom center.", "Below."),
    "bottom right": ("Bottom right.", "Right bottom.", "Lower right.", "Right lower."),
}
GRID_REGIONS = tuple(EMIT_LOCATION_WORDS)
# Stage2.sh (--system sysprompt.txt): the system prompt of EMIT's GRPO stage and evaluation
# (sysprompt.txt, no trailing newline).
EMIT_SYSTEM_PROMPT = "You are an industrial inspector who checks products by images."

# evaluate_batch_mmad_choice.py (guanwei49/EMIT 01dc319236eda9be13e14918cf9a5bf0d5c7a030),
# EMIT's MMAD evaluation. MMADDataset.instruct, the think and the direct variants:
EMIT_EVAL_THINK = (
    "Begin by documenting your analysis process within <think> </think> tags. Conclude with "
    "your final answer enclosed in <answer> </answer> tags. The final answer should be either "
    "'A' or 'B' or 'C' or 'D'. The output format should be as follows: "
    "<think>...</think><answer>...</answer>. Please adhere strictly to the prescribed format."
)
EMIT_EVAL_DIRECT = "Do not include any text in your response."
# MMADDataset.__getitem__: `rag` for Anomaly Detection and Defect* questions: this prefix and
# the category's knowledge values joined by "\n", with nothing between (MMAD's values start
# with a space, hence one space after "defects:"); "" for the other types.
EMIT_EVAL_KNOWLEDGE = (
    "The following provides domain knowledge regarding the characteristics of a normal "
    "product, as well as the various possible types of defects:"
)
# The one-shot prompt (Anomaly Detection and Defect*, similar_templates[0] then the query);
# {rag}, {instruct}, {question} = "{Question} \n" + "A. opt\n" per option (original keys).
EMIT_EVAL_TWO_IMAGE = (
    "Image-1: <image>\nImage-2: <image>\nI have uploaded two images for review, each featuring "
    "a product. The product shown in the first image appears to be in perfect condition, free "
    "of any defects. To answer a multiple-choice question, please inspect the product in the "
    "second image. There is only one correct option.\n{rag}\nSelect your answer by responding "
    "with the letter corresponding to the correct option, such as 'A'. {instruct}\n\n"
    "Question: {question}"
)
# The query-only prompt (Object questions); "Question:" has no space after it in the original.
EMIT_EVAL_ONE_IMAGE = (
    "Query image: <image>\nTo answer a multiple-choice question, please inspect the product in "
    "the given image. There is only one correct option.\n{rag}\nSelect your answer by "
    "responding with the letter corresponding to the correct option, such as 'A'. "
    "{instruct}\n\nQuestion:{question}"
)
# eval_benchmark/evaluate_batch_mmad_choice_QWEN.py: EMIT's Qwen2.5-VL harness bounds.
EMIT_QWEN_MIN_PIXELS = 256 * 28 * 28
EMIT_QWEN_MAX_PIXELS = 1280 * 28 * 28

# --- AnomalyR1 (chaoyuhao/AnomalyR1) --------------------------------------------------------
# open-r1-multimodal/src/open_r1/grpo_rec.py: the question template. "answer.Respond" (no
# space) is in the original.
ANOMALYR1_TEMPLATE = (
    "{problem} A conversation between User and Assistant. The user asks a choice question, and "
    "the Assistant solves it. The assistant first thinks about the reasoning process in the mind "
    "and then provides the user with the answer.Respond with your reasoning in <think> </think> "
    "tags followed by a single letter answer in <answer> </answer> tags."
)

# --- LR-IAD (paper only: arXiv 2504.19524, section III-D; the repository is empty) ----------
LR_IAD_TEMPLATE = (
    "This is an image containing a {object_name}. Analyze the given image and determine if "
    "there is any defect in the object.\nOutput the thinking process in <think> </think> and "
    "final answer in <answer> </answer> tags.\nOptions: (A) defect (B) normal.\nThe output "
    "answer format should be as follows:\n<think></think> <answer>A or B</answer>\nPlease "
    "strictly follow the format."
)
LR_IAD_OPTIONS = ("defect", "normal")  # (A) defect, (B) normal

# --- AD-FM (hanawall/AD-FM cd5416b1d144b7a69438011f2d02ce5e09d8e273) -------------------------
# scripts/grpo/prompt.txt (its final newline left out): the system prompt shipped with the
# reward plugin, R1's wording.
ADFM_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think><answer> answer here </answer>"
)
# OUR OWN WORDING, not protocol: AD-FM releases no user prompt (only the system prompt
# above). This prompt asks for what its rewards read: boxes
# [x1, y1, x2, y2] inside the first <think> block (pixels of the resized model input), a
# <rethink> block, and "a" (anomalous) or "b" (normal) in <answer>.
ADFM_PROMPT = (
    "Inspect the {object_name} in this image ({width}x{height} pixels) for defects.\n"
    "First, inside <think> </think>, describe the object and list every suspicious region as a "
    "bounding box [x1, y1, x2, y2] in pixel coordinates of this image.\n"
    "Then, inside <rethink> </rethink>, examine each listed region again and decide whether it "
    "is a real defect.\n"
    "Finally, answer inside <answer> </answer>: <answer>a</answer> if the object is anomalous, "
    "<answer>b</answer> if it is normal."
)
ADFM_OPTIONS = ("anomalous", "normal")  # answers "a" and "b"

# --- EMIT domain knowledge (guanwei49/EMIT) -------------------------------------------------
# traindata_gen/gen_domain_knowledge.py: the prompts EMIT sent to gpt-4-turbo, images
# downscaled to at most 512 px on the long side and sent as base64. The defect prompt comes
# with three images in this order: a similar normal image, the defect image, its mask.
EMIT_DEFECT_KNOWLEDGE_PROMPT = (
    "I am providing three images. The first two images feature the object labeled "
    '"{object_name}". In the first image, the object is in good condition. The second image '
    'displays a "{anomaly_type}" defect, while the third image presents a mask highlighting the '
    "defect identified in the second image. Your task is to specify the visual characteristics "
    'of the "{anomaly_type}" defect occurring on the object. Instead of describing the defect '
    "in a specific image, generate descriptive text that enables others to identify whether "
    '"{object_name}" in other images exhibits this kind of defect.'
)
# The normal prompt comes with one normal image; {defects} = the category's stored defect
# texts joined by "\n".
EMIT_NORMAL_KNOWLEDGE_PROMPT = (
    'This image depicts a "{object_name}" in good condition. The following are some potential '
    "defects that objects may encounter: {defects}. Your task is to define the visual "
    'characteristics of a standard "{object_name}" and briefly describe it. Do not output any '
    'other text, only the visual characteristics of the standard "{object_name}", and try not '
    "to describe it with points."
)
# How the answers are stored (newlines inside the model's description become spaces).
EMIT_DEFECT_KNOWLEDGE_HEADER = "<{title} Defect>\n Description: "
EMIT_NORMAL_KNOWLEDGE_HEADER = "<Normal Characteristics>\n Description: "

# --- Text samples: OUR OWN WORDING, not protocol ---------------------------------------------
# EMIT's Fig. 6 prompts (a normal image described as if it had a defect at a location, and a
# plain description) are not public. These are ours: each comes with one normal image, and
# {location} is one of the 3x3 region names of iad_pipeline.annotate.REGIONS ("top left", ...).
TEXT_SAMPLE_DEFECT_PROMPT = (
    'This image shows a "{object_name}" in good condition. Imagine the same object with a '
    '"{anomaly_type}" defect located in the {location} part of the image. Write a '
    "self-contained description of that defective object, detailed enough that someone could "
    "use it in place of the image: describe the object's appearance as seen here (shape, "
    "colour, material, background, position in the frame) and the defect's appearance, size "
    "and position. Describe it as if the defect were really there; do not mention that it is "
    "imagined, and output only the description."
)
TEXT_SAMPLE_NORMAL_PROMPT = (
    'This image shows a "{object_name}" in good condition. Write a self-contained description '
    "of the object in this image, detailed enough that someone could use it in place of the "
    "image: its shape, colour, material, surface, background and position in the frame. "
    "Output only the description."
)
