"""Shared fixtures for the evaluation tests: a tiny Qwen2.5-VL and a mini MMAD per session, an
empty results warehouse per test."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from eval.mmad_files import mmad_knowledge, mmad_templates
from eval.prompting import PromptSpec
from eval.warehouse import Warehouse
from iad_pipeline.questions.mmad_json import read_mmad_json
from iad_pipeline.synthetic import synthesize
from training.tiny_model import build_tiny_qwen25vl


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "qwen25vl", seed=0)


@pytest.fixture(scope="session")
def mini_mmad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic MMAD data root: 21 query images, 180 questions, mmad.json, knowledge."""
    root = tmp_path_factory.mktemp("mmad") / "ALL_DATA"
    synthesize("mmad", root, per_class=1, size=64)
    return root


@pytest.fixture(scope="session")
def mmad_questions(mini_mmad: Path) -> pl.DataFrame:
    return read_mmad_json(mini_mmad / "mmad.json", mini_mmad)


@pytest.fixture(scope="session")
def templates(mini_mmad: Path) -> dict[str, dict[str, list[str]]]:
    return mmad_templates(mini_mmad / "mmad.json")


@pytest.fixture(scope="session")
def knowledge(mini_mmad: Path) -> dict[str, str]:
    return mmad_knowledge(mini_mmad / "domain_knowledge.json")


class ScriptedBackend:
    """A backend without a model: answers ``answer_of(prompt)``, records every call.

    ``fail_after`` batches it raises ``RuntimeError`` (an interrupted run).
    """

    def __init__(self, answer_of=None, *, fail_after: int | None = None, name: str = "scripted"):
        self.name = name
        self.model = "scripted-model"
        self.answer_of = answer_of or (lambda p: "B")
        self.fail_after = fail_after
        self.batches: list[list[PromptSpec]] = []
        self.closed = 0  # close() calls: what the backend held is released

    def close(self) -> None:
        self.closed += 1

    def answer(self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            msg = f"killed after {self.fail_after} batches"
            raise RuntimeError(msg)
        self.batches.append(list(prompts))
        return [self.answer_of(p) for p in prompts]

    @property
    def asked(self) -> list[str]:
        return [p.question_id for batch in self.batches for p in batch]


@pytest.fixture
def scripted():
    return ScriptedBackend


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    """An empty results warehouse in the test's own folder."""
    return Warehouse(tmp_path / "results.duckdb")
