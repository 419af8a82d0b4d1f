"""Text samples rendered to images: size, ink, and text kept inside the canvas."""

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageFont

from iad_pipeline.errors import IadError
from iad_pipeline.knowledge.render import (
    RenderStyle,
    render_text,
    render_text_samples,
    render_to_file,
    wrap,
)

LONG = (
    "A metal bracket whose black paint is scratched near the top left corner, exposing "
    "bright bare metal along a thin diagonal line about a fifth of the part's width. "
) * 6


def ink(image: Image.Image) -> np.ndarray:
    """True where a pixel differs from the white background."""
    return np.asarray(image.convert("L")) < 250


@pytest.mark.parametrize(("width", "height"), [(448, 448), (224, 160), (640, 320)])
def test_canvas_size_and_text_inside_the_margins(width: int, height: int) -> None:
    style = RenderStyle(width=width, height=height, margin=12)
    image = render_text(LONG, style)
    assert image.size == (width, height)
    mask = ink(image)
    assert mask.sum() > 500  # something was drawn
    # nothing drawn in the right or bottom margins: the text was wrapped and fitted
    assert not mask[:, width - style.margin + 1 :].any()
    assert not mask[height - style.margin + 1 :, :].any()


def test_short_text_keeps_the_requested_font_size() -> None:
    style = RenderStyle(font_size=30)
    big = ink(render_text("Scratch.", style)).sum()
    small = ink(render_text("Scratch.", RenderStyle(font_size=12))).sum()
    assert big > 3 * small


def test_a_word_wider_than_the_canvas_is_split() -> None:
    font = ImageFont.load_default(size=20)
    lines = wrap("x" * 200, font, 100)
    assert len(lines) > 1
    assert all(font.getlength(line) <= 100 for line in lines)


def test_text_that_cannot_fit_is_cut_with_an_ellipsis() -> None:
    image = render_text(LONG * 20, RenderStyle(width=120, height=60, margin=4))
    assert image.size == (120, 60)


def test_empty_text_and_bad_font_are_errors(tmp_path) -> None:
    with pytest.raises(IadError, match="empty"):
        render_text("   ")
    with pytest.raises(IadError, match="cannot load this font"):
        render_text("x", RenderStyle(font_path=str(tmp_path / "nope.ttf")))


def test_render_to_file_and_table(tmp_path) -> None:
    out = render_to_file("A pill with a crack.", tmp_path / "a.png")
    assert Image.open(out).size == (448, 448)
    table = pl.DataFrame(
        {
            "text_sample_id": ["t1", "t2"],
            "text": ["A pill with a crack in the center.", None],
            "status": ["ok", "failed"],
        }
    )
    rendered = render_text_samples(table, tmp_path / "texts", {"width": 200, "height": 100})
    assert rendered["rendered_path"][1] is None
    assert Image.open(rendered["rendered_path"][0]).size == (200, 100)
