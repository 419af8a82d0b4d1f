"""Text samples drawn as images, for recipes that feed a text in place of the query image.

EMIT replaces missing defect images by descriptions of the defective object. A recipe can put
such a text inside the prompt, or, rendered here, where the query image would go. The text
is wrapped to the canvas with a scalable font that is available offline (a TrueType file you
name, else the one bundled with Pillow), shrunk until it fits, and cut with an ellipsis only
if even the smallest size overflows.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw, ImageFont

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_bytes

MIN_FONT = 8


@dataclass(frozen=True)
class RenderStyle:
    """How a text sample is drawn (one default, used by the CLI, assets and tests)."""

    width: int = 448
    height: int = 448
    margin: int = 16
    font_path: str | None = None
    font_size: int = 22
    line_spacing: float = 1.25
    background: tuple[int, int, int] = (255, 255, 255)
    color: tuple[int, int, int] = (20, 20, 20)


def _font(style: RenderStyle, size: int) -> ImageFont.FreeTypeFont:
    if style.font_path:
        try:
            return ImageFont.truetype(style.font_path, size)
        except OSError as exc:
            msg = f"{style.font_path}: cannot load this font ({exc}); pass a .ttf/.otf file"
            raise IadError(msg) from exc
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow without FreeType
        msg = "Pillow was built without FreeType; pass font_path to a .ttf file"
        raise IadError(msg)
    return font


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap to ``width`` pixels; words wider than a line are split.

    >>> f = ImageFont.load_default(size=10)
    >>> all(f.getlength(line) <= 60 for line in wrap("a rather long sentence here", f, 60))
    True
    """
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while font.getlength(word) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and font.getlength(word[:cut]) > width:
                    cut -= 1
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= width:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _layout(text: str, style: RenderStyle) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    inner_w = style.width - 2 * style.margin
    inner_h = style.height - 2 * style.margin
    for size in range(style.font_size, MIN_FONT - 1, -1):
        font = _font(style, size)
        lines = wrap(text, font, inner_w)
        step = int(size * style.line_spacing)
        if len(lines) * step <= inner_h:
            return font, lines, step
    step = int(MIN_FONT * style.line_spacing)
    keep = max(1, inner_h // step)
    lines = lines[:keep]
    lines[-1] = lines[-1][: max(0, len(lines[-1]) - 1)] + "…"
    return font, lines, step


def render_text(text: str, style: RenderStyle = RenderStyle()) -> Image.Image:
    """The text drawn on a plain canvas of ``style.width`` x ``style.height``.

    >>> im = render_text("A bottle with a crack at the top left.")
    >>> im.size, im.getextrema() != ((255, 255), (255, 255), (255, 255))
    ((448, 448), True)
    """
    if not text.strip():
        msg = "cannot render an empty text sample"
        raise IadError(msg)
    font, lines, step = _layout(text, style)
    image = Image.new("RGB", (style.width, style.height), style.background)
    draw = ImageDraw.Draw(image)
    y = style.margin
    for line in lines:
        draw.text((style.margin, y), line, font=font, fill=style.color)
        y += step
    return image


def render_to_file(text: str, out: Path, style: RenderStyle = RenderStyle()) -> Path:
    """Render ``text`` and write it as PNG, atomically."""
    buffer = io.BytesIO()
    render_text(text, style).save(buffer, format="PNG", optimize=True)
    return write_bytes(out, buffer.getvalue())


def render_text_samples(
    table: pl.DataFrame, out_dir: Path, style: RenderStyle | Mapping | None = None
) -> pl.DataFrame:
    """Render every ok row of a text-samples table; adds ``rendered_path`` (null otherwise)."""
    if isinstance(style, Mapping):
        style = RenderStyle(**style)
    style = style or RenderStyle()
    paths: list[str | None] = []
    for row in table.iter_rows(named=True):
        if row.get("status") == "ok" and row.get("text"):
            out = out_dir / f"{row['text_sample_id']}.png"
            paths.append(str(render_to_file(row["text"], out, style)))
        else:
            paths.append(None)
    return table.with_columns(pl.Series("rendered_path", paths, dtype=pl.String))
