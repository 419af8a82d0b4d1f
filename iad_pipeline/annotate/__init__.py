"""Annotations from ground-truth masks: defect boxes, EMIT's 3x3 grid regions, coordinates.

- :func:`mask_boxes`: dilation-grouped, tight ``[x1, y1, x2, y2]`` boxes of a mask
- :func:`grid_regions` / :func:`grid_label`: the ninths a defect touches, EMIT's rule
- :func:`annotate_samples`: the annotations and quarantine tables of a samples table
- :func:`smart_resize`, :func:`to_model_space`, ...: boxes in a model's coordinate frame
- :func:`draw_preview`: a contact sheet of boxes and grid lines for the Dagster UI
"""

from iad_pipeline.annotate.boxes import MaskError, binarize, mask_boxes, read_mask
from iad_pipeline.annotate.coords import (
    from_norm1000,
    smart_resize,
    to_model_space,
    to_norm1000,
    to_original_space,
)
from iad_pipeline.annotate.grid import REGIONS, grid_label, grid_regions
from iad_pipeline.annotate.preview import draw_preview
from iad_pipeline.annotate.table import AnnotationResult, annotate_samples, summarize_grid
from iad_pipeline.settings import AnnotationSettings

__all__ = [
    "REGIONS",
    "AnnotationResult",
    "AnnotationSettings",
    "MaskError",
    "annotate_samples",
    "binarize",
    "draw_preview",
    "from_norm1000",
    "grid_label",
    "grid_regions",
    "mask_boxes",
    "read_mask",
    "smart_resize",
    "summarize_grid",
    "to_model_space",
    "to_norm1000",
    "to_original_space",
]
