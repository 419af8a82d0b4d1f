"""Projector shapes, soft prompt initialisation, settings and placeholder rules."""

from __future__ import annotations

import pytest
import torch

from iad_pipeline.models.emit import (
    EmitModuleSettings,
    EmitSettingsError,
    HeatmapProjector,
    SoftPrompt,
    add_hint_placeholder,
)


@pytest.mark.parametrize(
    ("grid", "tokens"),
    [((32, 32), 256), ((4, 4), 4), ((7, 9), 3 * 4), ((2, 2), 1), ((5, 6), 2 * 3)],
)
def test_projector_output_shape(grid, tokens):
    out = HeatmapProjector(24)(torch.rand(3, *grid))
    assert out.shape == (3, tokens, 24)


def test_projector_parts_are_batchnorm_and_conv():
    projector = HeatmapProjector(8)
    assert isinstance(projector.norm, torch.nn.BatchNorm2d)
    assert (projector.conv.kernel_size, projector.conv.stride, projector.conv.padding) == (
        (4, 4),
        (2, 2),
        (1, 1),
    )


def test_soft_prompt_starts_from_the_cue_then_its_mean():
    cue = torch.arange(12.0).reshape(3, 4)
    prompt = SoftPrompt(5, 4)
    prompt.init_from(cue)
    torch.testing.assert_close(prompt.weight[:3], cue)
    torch.testing.assert_close(prompt.weight[3:], cue.mean(0).expand(2, 4))
    short = SoftPrompt(2, 4)
    short.init_from(cue)
    torch.testing.assert_close(short.weight, cue[:2])


@pytest.mark.parametrize(
    ("fields", "tokens"),
    [
        ({}, 9 + 256),  # EMIT: 9 soft prompt tokens, 16 x 16 contrastive embeddings
        ({"soft_prompt": False}, 256),  # w/o SP
        ({"contrastive": False}, 9),  # w/o CE
        ({"soft_prompt": False, "contrastive": False}, 0),  # w/o SP & CE
        ({"enabled": False}, 0),
        ({"heatmap_grid": 4, "soft_prompt_tokens": 3}, 3 + 4),
    ],
)
def test_ablation_switches_set_the_token_count(fields, tokens):
    assert EmitModuleSettings(**fields).num_tokens == tokens


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"window": -1}, "window=-1"),
        ({"layers": []}, "layers"),
        ({"layers": [0, 3]}, "layers"),
        ({"soft_prompt": "yes"}, "soft_prompt"),
        ({"heatmap_grid": 1}, "heatmap_grid"),
        ({"colour": 1}, "unknown keys \\['colour'\\]"),
    ],
)
def test_bad_settings_are_named(data, error):
    with pytest.raises(EmitSettingsError, match=error):
        EmitModuleSettings.from_mapping(data, source="r.yaml")


def test_vision_layers_follow_emit():
    assert EmitModuleSettings().vision_layers(24) == (4, 8, 16, 20)
    assert EmitModuleSettings().vision_layers(32) == (5, 11, 21, 27)
    assert EmitModuleSettings().vision_layers(2) == (1, 2)
    with pytest.raises(EmitSettingsError, match="exceed"):
        EmitModuleSettings(layers=(3, 30)).vision_layers(24)


BLOCKS = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]


@pytest.mark.parametrize(
    ("task", "n_images", "fields", "hinted", "text_query"),
    [
        ("anomaly_detection", 2, {}, True, False),
        ("defect_localization", 2, {}, True, False),
        ("Anomaly Detection", 2, {}, True, False),  # MMAD's question type
        ("defect_classification", 2, {}, False, False),
        ("defect_description", 2, {}, False, False),
        ("object_classification", 2, {}, False, False),
        ("Object Analysis", 2, {}, False, False),
        ("anomaly_detection", 1, {}, False, False),  # no reference image
        ("anomaly_detection", 0, {}, False, False),  # no image at all
        ("anomaly_detection", 2, {}, False, True),  # text sample: a described query
        ("anomaly_detection", 2, {"enabled": False}, False, False),
        ("anomaly_detection", 2, {"soft_prompt": False, "contrastive": False}, False, False),
    ],
)
def test_placeholder_only_where_emit_puts_hints(task, n_images, fields, hinted, text_query):
    settings = EmitModuleSettings(**fields)
    for content in (BLOCKS, "Image-1: <image>\nImage-2: <image>\nQ"):
        out = add_hint_placeholder(
            content, task=task, n_images=n_images, settings=settings, text_query=text_query
        )
        if hinted:
            tail = out[-1]["text"] if isinstance(out, list) else out[len(content) :]
            assert tail == settings.placeholder * settings.num_tokens
            assert out[: len(content)] == content
        else:
            assert out is content  # untouched: byte-identical prompts for every other question
