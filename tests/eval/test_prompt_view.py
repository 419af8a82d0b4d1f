"""``iad prompt`` prints the authors' exact prompts (golden cases from their code).

``golden/authors_prompts.json`` holds a small mmad.json and domain_knowledge.json and the
prompts MMAD's Qwen2.5-VL script and EMIT's evaluation built from them, run outside this
repository (source files and commits inside the file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.prompt_view import show_prompt
from eval.protocols import ProtocolError
from iad_pipeline.cli import main

GOLDEN = json.loads((Path(__file__).parent / "golden" / "authors_prompts.json").read_text())


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden_mmad") / "ALL_DATA"
    root.mkdir()
    (root / "mmad.json").write_text(json.dumps(GOLDEN["mmad_json"]))
    (root / "domain_knowledge.json").write_text(json.dumps(GOLDEN["domain_knowledge"]))
    return root


def _id(case: dict) -> str:
    extra = (
        f"-{case['shots']}{case['template'][0]}-dk{int(case['knowledge'])}"
        if "shots" in case
        else ""
    )
    return f"{case['key'].split('/')[1]}-q{case['question']}{extra}"


@pytest.mark.parametrize("case", GOLDEN["mmad"], ids=[_id(c) for c in GOLDEN["mmad"]])
def test_mmad_prompt_is_mmads(data_root: Path, tiny_model_dir: Path, case: dict) -> None:
    shown = show_prompt(
        data_root / "mmad.json",
        case["key"],
        case["question"],
        shots=case["shots"],
        template=case["template"],
        knowledge=data_root / "domain_knowledge.json" if case["knowledge"] else None,
        model=tiny_model_dir,
    )
    assert shown["images"] == case["images"]
    assert shown["text"] == case["text"]


@pytest.mark.parametrize(
    "case",
    GOLDEN["emit"],
    ids=[f"{_id(c)}-{'think' if c['think'] else 'direct'}" for c in GOLDEN["emit"]],
)
def test_emit_prompt_is_emits(data_root: Path, case: dict) -> None:
    shown = show_prompt(
        data_root / "mmad.json",
        case["key"],
        case["question"],
        protocol="emit_think" if case["think"] else "emit_direct",
        knowledge=data_root / "domain_knowledge.json",
    )
    assert shown["images"] == case["images"]
    assert shown["text"] == case["text"]
    assert shown["system"] == "You are an industrial inspector who checks products by images."


def test_openai_shows_the_request_content_in_mmads_order(data_root: Path) -> None:
    key = "VisA/candle/test/bad/002.JPG"
    shown = show_prompt(data_root / "mmad.json", key, 2, model="openai:gpt-4o")
    content = shown["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "image_url", "text"]
    assert [p["image_url"]["url"] for p in content if p["type"] == "image_url"] == shown["images"]
    assert shown["images"] == ["VisA/candle/train/good/333.JPG", key]
    assert content[2]["text"] == "Following is the query image: "
    assert content[4]["text"].startswith("Following is the question list: Question 2: ")


def test_cli_prints_one_json_object(data_root: Path, tiny_model_dir: Path, capsys) -> None:
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    argv = ["prompt", str(data_root / "mmad.json"), "--key", key, "--question", "1"]
    assert main([*argv, "--model", str(tiny_model_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"images", "text"}
    assert shown["images"] == ["MVTec-AD/bottle/train/good/107.png", key]
    assert "Picture 2: <|vision_start|>" in shown["text"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": "nope.png", "number": 1}, "no image 'nope.png'"),
        ({"key": "VisA/candle/test/bad/002.JPG", "number": 9}, "questions 1-3, not 9"),
        (
            {"key": "VisA/candle/test/bad/002.JPG", "number": 1, "protocol": "emit_think"},
            "--knowledge",
        ),
        (
            {"key": "VisA/candle/test/bad/002.JPG", "number": 1, "protocol": "llava"},
            "unknown protocol",
        ),
    ],
)
def test_bad_requests_are_clear_errors(data_root: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        show_prompt(data_root / "mmad.json", **kwargs)


def test_a_checkpoint_with_emits_module_shows_its_hint_placeholder(
    data_root: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from iad_pipeline.models.emit import EmitModuleSettings, attach_emit_module, save_emit_module
    from iad_pipeline.models.processors import load_model_and_processor

    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(tiny_model_dir, checkpoint)
    settings = EmitModuleSettings(layers=(1, 2), window=1, soft_prompt_tokens=2, heatmap_grid=2)
    model, processor = load_model_and_processor(checkpoint)
    attach_emit_module(model, settings, processor.tokenizer)
    save_emit_module(model, checkpoint)
    marks = settings.placeholder * settings.num_tokens
    seen = {}
    for case in GOLDEN["mmad"]:
        args = (data_root / "mmad.json", case["key"], case["question"])
        plain = show_prompt(*args, model=tiny_model_dir)["text"]
        hinted = show_prompt(*args, model=checkpoint)["text"]
        kind = "hinted" if marks in hinted else "plain"
        seen.setdefault(kind, []).append(case["question"])
        if kind == "plain":
            assert hinted == plain  # other question types: byte for byte the same
        else:
            assert hinted.replace(marks, "") == plain
    assert seen.get("hinted") and seen.get("plain")  # anomaly questions only
