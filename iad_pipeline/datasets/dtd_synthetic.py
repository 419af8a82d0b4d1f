"""DTD-Synthetic: 12 DTD texture classes with synthetic defects (zero-shot AD test set).

Reference: Aota et al., "Zero-shot versus Many-shot: Unsupervised Texture Anomaly Detection",
WACV 2023. Licence: not stated (derived from DTD, research use), so acceptance is required.
Manual download (Google Drive folder).

Layout: MVTec-like, ``<Cat>/{train/good, test/good, test/bad, ground_truth/bad}``. Masks are
paired by stem (``000_mask.png`` or ``000.png``); third-party loaders pair by sorted order,
which hides mismatches, so we report every unpaired file instead.
"""

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, DTD_SYNTHETIC_DEFECTS
from iad_pipeline.datasets.layout import MvtecLikeReader, RequireCategoryFolders
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "dtd_synthetic"

SPEC = DatasetSpec(
    key=KEY,
    name="DTD-Synthetic",
    licence="unstated (derived from DTD; research use)",
    needs_acceptance=True,
    manual=True,
    size="unknown",
    homepage="https://drive.google.com/drive/folders/10OyPzvI3H6llCZBxKxFlKWt1Pw1tkMK1",
    resources=(Resource(ARCHIVE_NAMES[KEY]),),
    scan=MvtecLikeReader(KEY),
    required=RequireCategoryFolders(),
    categories=tuple(DTD_SYNTHETIC_DEFECTS),
    manual_instructions=(
        "Download the DTD-Synthetic folder from the Google Drive link of Aota et al. (WACV'23), "
        "then run: iad datasets fetch dtd_synthetic --from PATH --accept-license"
    ),
)
