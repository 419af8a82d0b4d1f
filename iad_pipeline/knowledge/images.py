"""Images as a chat API receives them: downscaled PNG bytes and ``data:`` URLs.

EMIT sent gpt-4-turbo its images downscaled to at most 512 pixels on the long side, base64
encoded. :func:`png_bytes` does the same (aspect ratio kept, never upscaled) and
:func:`data_url` wraps the bytes. The PNG bytes are what the response cache hashes, so a
changed image (or a changed ``max_side``) is a new cache entry.

Masks (``mask=True``) are binarised to 0/255 first: a VisA or MVTec LOCO mask stores small
index values (1, 37, ...) that look black to a model. Downscaling a mask averages the pixels
and then marks every pixel that touched a defect, so a thin scratch stays visible.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from iad_pipeline.annotate.boxes import binarize, decode_mask
from iad_pipeline.errors import IadError
from iad_pipeline.settings import MAX_SIDE


class ImageEncodeError(IadError):
    """An image that cannot be read or encoded for a chat request."""


def scaled_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``(width, height)`` with the long side at most ``max_side``, aspect kept, no upscale.

    EMIT's arithmetic (``encode_image`` in ``traindata_gen/utils.py``, guanwei49/EMIT
    ``01dc319``): the long side becomes ``max_side`` (the height when the image is square) and
    the short side ``int(max_side / long * short)``, truncated, not rounded. Unlike EMIT, a
    short side that truncates to 0 is kept at 1 pixel (PIL cannot make an empty image).

    >>> scaled_size(1024, 768), scaled_size(300, 200), scaled_size(2000, 10)
    ((512, 384), (300, 200), (512, 2))
    >>> scaled_size(1000, 999)  # 511.488: EMIT truncates to 511 (rounding gave 511 too)
    (512, 511)
    >>> scaled_size(700, 1000)  # 358.4 -> 358
    (358, 512)
    """
    if max_side < 1:
        msg = f"max_side={max_side}: expected a positive number of pixels"
        raise ImageEncodeError(msg)
    if max(width, height) <= max_side:
        return width, height
    if width > height:
        return max_side, max(1, int((max_side / width) * height))
    return max(1, int((max_side / height) * width)), max_side


def _to_8bit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    top = float(array.max()) if array.size else 0.0
    if np.issubdtype(array.dtype, np.floating) and top <= 1.0:
        return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and top > 255:
        return (array.astype(np.float64) * (255 / top)).round().astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    """A PIL image of an ``(H, W)`` or ``(H, W, 3|4)`` RGB(A) array."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        msg = f"array of shape {array.shape}: expected (H, W), (H, W, 3) RGB or (H, W, 4) RGBA"
        raise ImageEncodeError(msg)
    image = Image.fromarray(np.ascontiguousarray(_to_8bit(array)))
    return image.convert("RGB") if image.mode == "RGBA" else image


def _open(path: Path, max_side: int) -> Image.Image:
    if path.exists() and not path.is_file():  # a FIFO would block, a device never end
        msg = f"{path}: not a regular file (a FIFO, device or folder); it is never read"
        raise ImageEncodeError(msg)
    try:
        with Image.open(path) as raw:
            # JPEG can decode at a reduced size directly: much faster for big photos.
            raw.draft("RGB", scaled_size(*raw.size, max_side))
            raw.load()
            image = raw.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        why = "the file does not exist" if not path.is_file() else str(exc).splitlines()[0]
        msg = (
            f"{path}: cannot read image ({why}); expected a PNG, JPEG, BMP or TIFF file; "
            "re-extract the dataset or drop the sample"
        )
        raise ImageEncodeError(msg) from exc
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _from_array(np.asarray(image))
    return image.convert("RGB")


def _mask_image(source: str | Path | np.ndarray) -> Image.Image:
    raw = source if isinstance(source, np.ndarray) else decode_mask(source)
    return Image.fromarray(binarize(raw) * np.uint8(255))


def png_bytes(
    source: str | Path | np.ndarray, max_side: int = MAX_SIDE, *, mask: bool = False
) -> bytes:
    """PNG bytes of an image file or array, long side at most ``max_side`` pixels.

    Args:
        source: A file path, or an array (``(H, W)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)``
            RGBA; any integer, bool or float dtype).
        max_side: Longest side in pixels after downscaling (never upscaled).
        mask: Binarise first: any non-zero pixel (any channel) becomes 255, the rest 0.

    Raises:
        ImageEncodeError: The file cannot be read or the array has an unusable shape.

    >>> from PIL import Image
    >>> import io
    >>> im = Image.open(io.BytesIO(png_bytes(np.zeros((1000, 250, 3), np.uint8))))
    >>> im.size, im.mode
    ((128, 512), 'RGB')
    >>> m = np.zeros((8, 8), np.uint8); m[2, 2] = 1
    >>> np.unique(np.asarray(Image.open(io.BytesIO(png_bytes(m, mask=True))))).tolist()
    [0, 255]
    """
    if mask:
        image = _mask_image(source)
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _open(Path(source), max_side)
    size = scaled_size(*image.size, max_side)
    if size != image.size:
        if mask:
            # Average, then keep every pixel a defect touched: thin defects stay visible.
            small = np.asarray(image.resize(size, Image.Resampling.BOX))
            image = Image.fromarray((small > 0).astype(np.uint8) * np.uint8(255))
        else:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def to_data_url(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URL of PNG bytes.

    >>> to_data_url(b"\\x89PNG")
    'data:image/png;base64,iVBORw=='
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def data_url(
    source: str | Path | np.ndarray, max_side: int = MAX_SIDE, *, mask: bool = False
) -> str:
    """A PNG ``data:`` URL of an image file or array, long side at most ``max_side``.

    See :func:`png_bytes` for the arguments.

    >>> data_url(np.zeros((4, 4), np.uint8))[:30]
    'data:image/png;base64,iVBORw0K'
    """
    return to_data_url(png_bytes(source, max_side, mask=mask))
