"""MPDD: Metal Parts Defect Detection, 6 categories of painted metal parts.

Reference: Jezek et al., "Deep learning-based defect detection of metal parts: evaluating
current methods in complex conditions", ICUMT 2021. https://github.com/stepanje/MPDD
Licence: CC BY-NC-SA 4.0 (acceptance required). Manual download (OneDrive folder).

Layout: MVTec AD's (``ground_truth/<defect>/<stem>_mask.png``).
"""

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, MPDD_DEFECTS
from iad_pipeline.datasets.layout import MvtecLikeReader, RequireCategoryFolders
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "mpdd"

SPEC = DatasetSpec(
    key=KEY,
    name="MPDD",
    licence="CC BY-NC-SA 4.0",
    needs_acceptance=True,
    manual=True,
    size="unknown",
    homepage="https://github.com/stepanje/MPDD",
    resources=(Resource(ARCHIVE_NAMES[KEY]),),
    scan=MvtecLikeReader(KEY),
    required=RequireCategoryFolders(),
    categories=tuple(MPDD_DEFECTS),
    manual_instructions=(
        "Download the MPDD folder from the OneDrive link in https://github.com/stepanje/MPDD, "
        "then run: iad datasets fetch mpdd --from PATH --accept-license "
        "(PATH: the unzipped folder holding bracket_black/, ... tubes/, or the zip itself)."
    ),
)
