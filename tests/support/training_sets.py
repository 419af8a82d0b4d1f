"""A tiny exported training set, as the training_set asset writes it, for training tests."""

from __future__ import annotations

from pathlib import Path


def emit_training_set(base: Path, styles: tuple[str, ...] = ("emit",)) -> dict[str, Path]:
    """One exported ``datasets`` folder per question style, from one synthetic MPDD category
    (``metal_plate``, one image per class): questions with their normal references."""
    from iad_pipeline.annotate import annotate_samples
    from iad_pipeline.datasets.registry import get_spec
    from iad_pipeline.datasets.samples import build_samples
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset
    from iad_pipeline.synthetic import synthesize

    root = synthesize("mpdd", base / "mpdd", per_class=1, categories=["metal_plate"])
    samples = build_samples(get_spec("mpdd").scan(root.root)).samples
    annotations = annotate_samples(samples, workers=1).annotations
    refs = dict(zip(samples["sample_id"], samples["image_path"], strict=True))
    questions = build_questions(samples, annotations, styles=list(styles), reference_images=refs)
    return {
        style: save_hf_dataset(
            to_hf_dataset(questions.filter(questions["style"] == style)), base / style
        )
        for style in styles
    }
