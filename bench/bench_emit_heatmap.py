"""Benchmark: EMIT's heat map per image pair against the vision tower's own forward pass.

Qwen2.5-VL-7B's vision tower (hidden 1280, 16 heads, MLP 3420, patch 14, 2 x 2 merge, window
112 pixels, full attention every 8th block; random float32 weights) encodes a pair of
MMAD-sized images: 1024 x 1024 (MVTec AD's size) resized under MMAD's cap of
``1280 * 28 * 28`` pixels, i.e. 980 x 980, a 70 x 70 patch grid, 4,900 patches each. The
comparison module's extra work on that pair is then timed: the four chosen layers' outputs
put back in raster order, the windowed heat map (k = 6, EMIT's default) of the query against
the reference for each layer, their mean, the resampling to 32 x 32 and the projector into
the 7B language model's width (3584).

The tower has 32 blocks (28 windowed, 4 full attention). ``--depth`` builds fewer (default
8: 7 windowed and 1 full, a quarter of the time on a small CPU); each block's time is
measured with hooks and the 32-block forward is extrapolated as "everything but the blocks +
28 x mean windowed block + 4 x mean full block". ``--depth 32`` measures the whole tower.
The ratio printed is heat-map work / tower forward (target <= 0.10); the ratio against the
``--depth`` tower actually run is printed too (an upper bound: fewer blocks, same heat map).

    nice python bench/bench_emit_heatmap.py [--depth 8] [--repeats 3] [--threads 2]
    python bench/bench_emit_heatmap.py --device cuda --depth 32 --repeats 10   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.vision_utils import get_vision_window_index

from iad_pipeline.models.emit.heatmap import layered_heatmap
from iad_pipeline.models.emit.projector import HeatmapProjector
from iad_pipeline.models.emit.vision import capture_layers, qwen_raster, unwindow
from training.tiny_model import FULL_SIZES, QWEN_VISION_COMMON

MMAD_MAX_PIXELS = 1280 * 28 * 28
FULL_DEPTH = 32
FULL_ATTENTION_BLOCKS = 4
HEAT_LAYERS = 4  # EMIT compares four layers
WINDOW = 6
GRID = 32


def tower(depth: int) -> Qwen2_5_VisionTransformerPretrainedModel:
    vision = QWEN_VISION_COMMON | FULL_SIZES["7b"]["vision"] | {"depth": depth}
    # as the real tower: full attention in every 8th block (and in the last of a short tower)
    vision["fullatt_block_indexes"] = [i for i in range(depth) if i % 8 == 7 or i == depth - 1]
    config = Qwen2_5_VLConfig(vision_config=vision).vision_config
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2_5_VisionTransformerPretrainedModel._from_config(config).eval()


def pair_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)) for _ in "rq"]
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=MMAD_MAX_PIXELS)
    out = processor(images=images, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (bfloat16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = tower(args.depth).to(device, dtype)
    pixels, grid = pair_inputs()
    pixels = pixels.to(device, dtype)

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    layers = tuple(round(args.depth * (i + 1) / HEAT_LAYERS) for i in range(HEAT_LAYERS))
    full_blocks = set(model.fullatt_block_indexes)

    block_times: dict[int, list[float]] = {i: [] for i in range(args.depth)}
    starts: dict[int, float] = {}
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda _m, _a, i=i: starts.__setitem__(i, now()))
        block.register_forward_hook(
            lambda _m, _a, _o, i=i: block_times[i].append(now() - starts[i])
        )

    projector = HeatmapProjector(FULL_SIZES["7b"]["text"]["hidden_size"]).to(device, dtype).eval()
    tower_s, heat_s = [], []
    with torch.inference_mode():
        for _ in range(args.repeats):
            t0 = now()
            with capture_layers(model.blocks, layers) as seen:
                model(pixels, grid_thw=grid)
            tower_s.append(now() - t0)

            t0 = now()
            window, _ = get_vision_window_index(grid, 2, model.window_size, model.patch_size)
            per_layer = [qwen_raster(unwindow(seen[layer], window, 4), grid, 2) for layer in layers]
            ref = [feats[0][None] for feats in per_layer]
            query = [feats[1][None] for feats in per_layer]
            heat = layered_heatmap(query, ref, WINDOW)
            heat = torch.nn.functional.interpolate(
                heat[:, None], size=(GRID, GRID), mode="bilinear", antialias=True
            )[:, 0]
            projector(heat)
            heat_s.append(now() - t0)

    tower_t, heat_t = statistics.median(tower_s), statistics.median(heat_s)
    window_block = statistics.median(
        t for i, ts in block_times.items() if i not in full_blocks for t in ts
    )
    full_block = statistics.median(t for i in full_blocks for t in block_times[i])
    blocks_t = sum(statistics.median(ts) for ts in block_times.values())
    rest = tower_t - blocks_t
    full_tower = (
        rest
        + (FULL_DEPTH - FULL_ATTENTION_BLOCKS) * window_block
        + FULL_ATTENTION_BLOCKS * full_block
    )
    h, w = (int(v) for v in grid[0, 1:])
    print(f"pair: 2 images of {h * 14} x {w * 14} px, {h} x {w} patches each, hidden 1280")
    where = f"{args.threads} threads" if device.type == "cpu" else torch.cuda.get_device_name()
    print(f"{where}, {dtype}, repeats {args.repeats} (medians)")
    print(f"tower depth {args.depth}: {tower_t:.2f} s per pair forward")
    print(f"  windowed block {window_block:.3f} s, full-attention block {full_block:.3f} s")
    print(f"  outside the blocks {rest:.3f} s")
    print(f"32-block tower (extrapolated): {full_tower:.2f} s per pair forward")
    print(f"heat map ({HEAT_LAYERS} layers, k={WINDOW}) + resample + projector: {heat_t:.3f} s")
    print(f"ratio heat map / {args.depth}-block tower: {heat_t / tower_t:.4f}")
    print(f"ratio heat map / 32-block tower: {heat_t / full_tower:.4f} (target <= 0.10)")


if __name__ == "__main__":
    main()
