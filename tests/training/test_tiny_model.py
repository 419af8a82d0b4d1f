"""The tiny Qwen2.5-VL: offline, fast, deterministic, loadable by the Auto classes, generates."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)

from iad_pipeline.models.processors import (
    Qwen2_5_VLImageOnlyProcessor,
    load_model_and_processor,
    load_processor,
)
from iad_pipeline.models.qwen_tokenizer import QWEN_FIRST_ADDED_ID, SPECIAL_TOKENS, build_tokenizer
from training.tiny_model import build_tiny_qwen25vl, model_config

IMAGE_MESSAGE = [
    {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "Is there any anomaly?"}],
    }
]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_builds_offline_a_small_folder_with_weights_and_tokenizer(tmp_path: Path) -> None:
    # build time is bench/bench_tiny_model.py's to measure, never a test's
    out = build_tiny_qwen25vl(tmp_path / "model")
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert sum(p.stat().st_size for p in out.iterdir()) < 2_000_000


def test_same_seed_gives_identical_files_and_another_seed_other_weights(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    same = _digests(build_tiny_qwen25vl(tmp_path / "same", seed=0))
    other = _digests(build_tiny_qwen25vl(tmp_path / "other", seed=1))
    assert same == _digests(tiny_model_dir)
    assert other["model.safetensors"] != same["model.safetensors"]
    assert other["tokenizer.json"] == same["tokenizer.json"]


def test_an_existing_folder_is_replaced_whole_and_no_temporary_is_left(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old", encoding="utf-8")
    build_tiny_qwen25vl(out)
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_auto_classes_load_the_folder(tiny_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor)
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert processor.tokenizer.padding_side == "left"
    assert model.num_parameters() < 300_000


def test_tiny_config_is_consistent(tiny_model_dir: Path) -> None:
    model, processor = load_model_and_processor(tiny_model_dir)
    text, vision = model.config.text_config, model.config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (64, 2, 4)
    assert text.num_key_value_heads == 2
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size) == (2, 32, 64)
    assert len(processor.tokenizer) <= text.vocab_size == 448
    token_ids = processor.tokenizer.convert_tokens_to_ids
    assert model.config.image_token_id == token_ids("<|image_pad|>") == processor.image_token_id
    assert model.config.video_token_id == token_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == token_ids("<|vision_start|>")
    assert model.dtype == torch.float32


def test_special_tokens_follow_the_trained_vocabulary_in_qwen_order() -> None:
    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    text = "<|im_start|>user\nIs there any anomaly?<|im_end|>"
    encoded = tokenizer(text)["input_ids"]
    assert tokenizer.decode(encoded) == text
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "user\nIs there any anomaly?"


def test_special_tokens_can_sit_at_qwens_real_ids() -> None:
    tokenizer = build_tokenizer(first_added_id=QWEN_FIRST_ADDED_ID)
    ids = tokenizer.convert_tokens_to_ids(
        ["<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|file_sep|>"]
    )
    assert ids == [151643, 151645, 151655, 151664]
    assert tokenizer.tokenize("an anomaly") == build_tokenizer().tokenize("an anomaly")


def test_chat_template_with_an_image_inserts_image_pad_tokens(tiny_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    text = processor.apply_chat_template(IMAGE_MESSAGE, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Is there any anomaly?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    inputs = processor(images=[Image.new("RGB", (64, 64))], text=[text], return_tensors="pt")
    # 64x64 -> 56x56 (min_pixels 28*28*4): 4x4 patches of 14, merged 2x2 -> 4 pad tokens
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 4
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert inputs["pixel_values"].shape == (16, 3 * 2 * 14 * 14)


def test_generate_with_an_image(tiny_model_dir: Path) -> None:
    model, processor = load_model_and_processor(tiny_model_dir)
    text = processor.apply_chat_template(IMAGE_MESSAGE, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (96, 64), "blue")]
    inputs = processor(images=images, text=[text, text], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=True, min_new_tokens=6)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 6)
    assert all(isinstance(s, str) for s in processor.batch_decode(out, skip_special_tokens=True))


def test_a_checkpoint_naming_the_stock_processor_still_loads(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Real Qwen2.5-VL folders name Qwen2_5_VLProcessor, which needs torchvision to build."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "stock")
    for name in ("processor_config.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text(encoding="utf-8"))
        config["processor_class"] = "Qwen2_5_VLProcessor"
        (folder / name).write_text(json.dumps(config), encoding="utf-8")
    processor = load_processor(folder)
    assert isinstance(processor, Qwen2_5_VLProcessor)
    assert processor.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


# Published Qwen/Qwen2.5-VL-{3B,7B}-Instruct config.json values.
FULL_SIZE_CASES = {
    "3b": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "vision_out_hidden_size": 2048,
    },
    "7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
        "vision_out_hidden_size": 3584,
    },
}


@pytest.mark.parametrize("size", sorted(FULL_SIZE_CASES))
def test_full_size_configs_match_the_published_ones(size: str) -> None:
    config = model_config(build_tokenizer(first_added_id=QWEN_FIRST_ADDED_ID), size)
    text, vision, want = config.text_config, config.vision_config, FULL_SIZE_CASES[size]
    assert text.hidden_size == want["hidden_size"]
    assert text.intermediate_size == want["intermediate_size"]
    assert text.num_hidden_layers == want["num_hidden_layers"]
    assert text.num_attention_heads == want["num_attention_heads"]
    assert text.num_key_value_heads == want["num_key_value_heads"]
    assert text.vocab_size == want["vocab_size"]
    assert config.tie_word_embeddings is want["tie_word_embeddings"]
    assert vision.out_hidden_size == want["vision_out_hidden_size"]
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (
        32,
        1280,
        3420,
        16,
    )
    assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31]
    assert (vision.patch_size, vision.spatial_merge_size, vision.window_size) == (14, 2, 112)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert text.rope_parameters["rope_theta"] == 1_000_000.0
    assert text.max_position_embeddings == 128000
    assert text.rms_norm_eps == 1e-6
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    assert (config.vision_start_token_id, config.vision_end_token_id) == (151652, 151653)
    assert (text.bos_token_id, text.eos_token_id) == (151643, 151645)


@pytest.mark.parametrize(("size", "billions"), [("3b", 3.75), ("7b", 8.29)])
def test_full_size_parameter_counts_on_the_meta_device(size: str, billions: float) -> None:
    config = model_config(build_tokenizer(first_added_id=QWEN_FIRST_ADDED_ID), size)
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        model = Qwen2_5_VLForConditionalGeneration(config)
    assert model.num_parameters() / 1e9 == pytest.approx(billions, abs=0.01)


def test_unknown_full_size_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"'13b'.*\['3b', '7b', 'small'\]"):
        model_config(build_tokenizer(), "13b")


def test_the_small_offline_model_is_wider_and_keeps_the_tiny_tokenizer(tmp_path: Path) -> None:
    """``model: small`` (the demo's): 128 wide, 4 layers, ~0.9M parameters, the tiny model's
    tokenizer and pixel sizes, and it generates from an image."""
    from training.tiny_model import build_tokenizer

    out = build_tiny_qwen25vl(tmp_path / "small", full_size="small", read_options=False)
    model, processor = load_model_and_processor(out)
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, model.config.vision_config.depth) == (
        128,
        4,
        2,
    )
    assert 800_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    assert len(processor.tokenizer) == len(build_tokenizer())
    prompt = processor.apply_chat_template(IMAGE_MESSAGE, add_generation_prompt=True)
    inputs = processor(
        images=[Image.new("RGB", (64, 64), "red")], text=[prompt], return_tensors="pt"
    )
    out_ids = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out_ids.shape[1] == inputs["input_ids"].shape[1] + 4
