"""The injecting forward on tiny Qwen2.5-VL and InternVL3: every path, stage 1, ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import Qwen2_5_VLModel
from transformers.vision_utils import get_vision_window_index

from iad_pipeline.models.emit import (
    EmitError,
    EmitModuleSettings,
    attach_emit_module,
    find_emit_module,
    freeze_for_alignment,
    layered_heatmap,
    train_emit_module,
)
from iad_pipeline.models.emit.vision import qwen_raster, unwindow
from tests.training.emit_module.emit_helpers import (
    FAMILIES,
    SMALL,
    batch,
    load,
    with_module,
)


def manual_features(model, family, inputs):
    """Per image, per chosen layer, (H, W, D) features from output_hidden_states."""
    layers = find_emit_module(model).layers
    pixels = inputs["pixel_values"]
    if family == "qwen2_5_vl":
        visual, grid = model.model.visual, inputs["image_grid_thw"]
        hidden = visual(pixels, grid_thw=grid, output_hidden_states=True).hidden_states
        window, _ = get_vision_window_index(
            grid, visual.spatial_merge_size, visual.window_size, visual.patch_size
        )
        per_layer = [qwen_raster(unwindow(hidden[layer], window, 4), grid, 2) for layer in layers]
        return [[per_layer[i][j] for i in range(len(layers))] for j in range(len(grid))]
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
    side = model.config.vision_config.image_size[0] // 14
    # tiles: reference = 2 crops + thumbnail (index 2), query = 1 tile (index 3)
    tiles = {0: 2, 1: 3} if pixels.shape[0] == 4 else {}
    return [
        [hidden[layer][t, 1:].reshape(side, side, -1) for layer in layers] for t in tiles.values()
    ]


def manual_hints(model, family, inputs):
    emit = find_emit_module(model)
    ref, query = manual_features(model, family, inputs)
    heat = layered_heatmap([q[None] for q in query], [r[None] for r in ref], emit.settings.window)
    g = emit.settings.heatmap_grid
    heat = F.interpolate(heat[:, None], size=(g, g), mode="bilinear", antialias=True)[:, 0]
    return torch.cat([emit.soft_prompt.weight[None], emit.projector(heat)], dim=1)


def manual_logits(model, family, inputs, embeds):
    """The stock forward on ``embeds``; the placeholders are hidden from the module."""
    kwargs = dict(inputs)
    ids = kwargs.pop("input_ids")
    if family == "qwen2_5_vl":  # input_ids place the images and positions; any text id will do
        plain_ids = ids.masked_fill(ids == find_emit_module(model).placeholder_id, 0)
        return model(input_ids=plain_ids, inputs_embeds=embeds, **kwargs).logits
    return model(inputs_embeds=embeds, **kwargs).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_equals_a_manual_forward_with_the_same_embeddings(model_dirs, family):
    model, processor = with_module(model_dirs, family)
    model.eval()
    inputs = batch(processor, hinted=(True,))
    emit = find_emit_module(model)
    with torch.no_grad():
        hints = manual_hints(model, family, inputs)
        ids = inputs["input_ids"]
        embeds = model.get_input_embeddings()(ids)
        embeds[ids == emit.placeholder_id] = hints.reshape(-1, hints.shape[-1])
        expected = manual_logits(model, family, inputs, embeds)[:, -1]
        out = model.generate(
            **inputs,
            max_new_tokens=3,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        plain = manual_logits(model, family, inputs, model.get_input_embeddings()(ids))[:, -1]
    torch.testing.assert_close(out.logits[0], expected, atol=1e-4, rtol=1e-4)
    assert out.sequences[0, ids.shape[1]].item() == expected.argmax(-1).item()
    assert not torch.allclose(plain, expected, atol=1e-3)  # the hints do change the answer


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_without_placeholder_run_the_plain_model(model_dirs, family):
    plain, processor = load(model_dirs, family)
    model, _ = with_module(model_dirs, family)
    inputs = batch(processor, hinted=(False,))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, plain(**inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_mixed_batch_hints_only_its_hinted_rows(model_dirs, family):
    model, processor = with_module(model_dirs, family)
    model.eval()
    mixed = batch(processor, hinted=(True, False))
    alone = batch(processor, hinted=(True,))
    with torch.no_grad():
        both = model(**mixed).logits[0, -1]
        single = model(**alone).logits[0, -1]
    torch.testing.assert_close(both, single, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_stage1_updates_only_the_module(model_dirs, family):
    model, processor = with_module(model_dirs, family)
    model.train()
    trainable = freeze_for_alignment(model)
    emit = find_emit_module(model)
    assert trainable == sum(p.numel() for p in emit.parameters())
    own = {id(p) for p in emit.parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = batch(processor, hinted=(True, True))
    target = processor.tokenizer.convert_tokens_to_ids("A")
    logits = model(**inputs).logits[:, -1]
    F.cross_entropy(logits, torch.full((2,), target)).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if id(param) in own:
            assert not torch.equal(param, before[name]), f"{name} did not move"
        else:
            assert torch.equal(param, before[name]), f"{name} changed in stage 1"


def test_train_emit_module_undoes_a_freeze(model_dirs):
    model, _ = with_module(model_dirs, "internvl")
    for param in model.parameters():
        param.requires_grad_(False)
    assert train_emit_module(model) == sum(p.numel() for p in find_emit_module(model).parameters())
    assert all(p.requires_grad for p in find_emit_module(model).parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("fields", "parts"),
    [({"soft_prompt": False}, ("projector",)), ({"contrastive": False}, ("soft_prompt",))],
)
def test_ablations_keep_only_their_part(model_dirs, family, fields, parts):
    settings = EmitModuleSettings(**(SMALL.to_dict() | fields | {"layers": None}))
    model, processor = with_module(model_dirs, family, settings)
    emit = find_emit_module(model)
    assert [n for n in ("soft_prompt", "projector") if getattr(emit, n) is not None] == list(parts)
    inputs = batch(processor, settings, hinted=(True,))
    assert (inputs["input_ids"] == emit.placeholder_id).sum() == settings.num_tokens
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_without_both_parts_the_model_stays_plain(model_dirs):
    model, processor = load(model_dirs, "qwen2_5_vl")
    off = EmitModuleSettings(soft_prompt=False, contrastive=False)
    same = attach_emit_module(model, off, processor.tokenizer)
    assert same is model and type(model.model) is Qwen2_5_VLModel
    assert find_emit_module(model) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_unusable_inputs_are_errors(model_dirs, family):
    model, processor = with_module(model_dirs, family)
    inputs = dict(batch(processor, hinted=(True,)))
    emit = find_emit_module(model)
    short = dict(inputs)
    ids = short["input_ids"].clone()
    ids[0, (ids[0] == emit.placeholder_id).nonzero()[0]] = processor.tokenizer.pad_token_id
    short["input_ids"] = ids
    with pytest.raises(EmitError, match="holds 6 placeholder tokens"):
        model(**short)
    no_images = {k: v for k, v in inputs.items() if k not in ("pixel_values", "image_grid_thw")}
    with pytest.raises(EmitError, match="no pixel_values"):
        model(**no_images)


def test_one_image_prompt_with_placeholders_is_an_error(model_dirs):
    model, processor = with_module(model_dirs, "internvl")
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    text = text.replace("Q", "Q" + SMALL.placeholder * SMALL.num_tokens)
    inputs = processor(text=[text], images=[Image.new("RGB", (56, 56))], return_tensors="pt")
    with pytest.raises(EmitError, match="shows 1 image"):
        model(**inputs)


def test_qwen_layer_outputs_are_put_back_in_raster_order(model_dirs):
    """Patch (i, j) of an image painted with red 40 i and green 40 j comes back at (i, j)."""
    model, processor = load(model_dirs, "qwen2_5_vl")
    h, w = 4, 6
    image = Image.new("RGB", (14 * w, 14 * h))
    for i in range(h):
        for j in range(w):
            image.paste((40 * i, 40 * j, 0), (14 * j, 14 * i, 14 * j + 14, 14 * i + 14))
    ip = processor.image_processor
    out = ip(images=[image], return_tensors="pt")
    grid = out["image_grid_thw"]
    assert grid.tolist() == [[1, h, w]]
    rows = out["pixel_values"].reshape(-1, 3, 2 * 14 * 14).mean(-1)  # (N, C) normalised
    rgb = rows * torch.tensor(ip.image_std)[None] + torch.tensor(ip.image_mean)[None]
    ij = torch.round(rgb[:, :2] * 255 / 40)
    raster = qwen_raster(ij, grid, 2)[0]
    expected = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1)
    assert torch.equal(raster, expected.float())
    visual = model.model.visual
    big = torch.tensor([[1, 8, 12]])  # 2 x 2 windows of merge blocks: a real permutation
    window, _ = get_vision_window_index(big, 2, visual.window_size, visual.patch_size)
    assert not torch.equal(window, torch.arange(len(window)))
    tokens = torch.randn(8 * 12, 5)
    windowed = visual.permute_input_for_window_attn(tokens, window, seq_len=8 * 12)
    assert torch.equal(unwindow(windowed, window, 4), tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_repeated_pair_is_compared_once(model_dirs, family, monkeypatch):
    """GRPO's batches repeat each prompt: one heat map per distinct image pair."""
    import iad_pipeline.models.emit.vision as emit_vision

    model, processor = with_module(model_dirs, family)
    model.eval()
    pairs_seen = []
    real = emit_vision.layered_heatmap

    def counting(queries, references, window):
        pairs_seen.append(queries[0].shape[0])
        return real(queries, references, window)

    monkeypatch.setattr(emit_vision, "layered_heatmap", counting)
    with torch.no_grad():
        single = model(**batch(processor, hinted=(True,))).logits[0, -1]
        assert pairs_seen == [1]
        pairs_seen.clear()
        same = model(**batch(processor, hinted=(True, True, True), seeds=(0, 0, 0))).logits
        assert pairs_seen == [1]
        pairs_seen.clear()
        model(**batch(processor, hinted=(True, True, True), seeds=(0, 1, 0)))
        assert pairs_seen == [2]  # two distinct pairs, one batched call (same grids)
    for row in range(3):
        torch.testing.assert_close(same[row, -1], single, atol=1e-4, rtol=1e-4)
