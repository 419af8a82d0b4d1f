"""MVTec AD: 15 industrial categories, pixel-precise masks.

Reference: Bergmann et al., "MVTec AD: A Comprehensive Real-World Dataset for Unsupervised
Anomaly Detection", CVPR 2019. https://www.mvtec.com/company/research/datasets/mvtec-ad
Licence: CC BY-NC-SA 4.0 (non-commercial; acceptance required).

Layout: ``<cat>/train/good/000.png``, ``<cat>/test/<good|defect>/000.png``,
``<cat>/ground_truth/<defect>/000_mask.png`` (0/255). 5,354 images, 1,258 masks.
"""

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, MVTEC_AD_DEFECTS
from iad_pipeline.datasets.layout import MvtecLikeReader, RequireCategoryFolders
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "mvtec_ad"
URL = (
    "https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/"
    "420938113-1629960298/mvtec_anomaly_detection.tar.xz"
)
SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"

SPEC = DatasetSpec(
    key=KEY,
    name="MVTec AD",
    licence="CC BY-NC-SA 4.0",
    needs_acceptance=True,
    manual=False,
    size="~4.9 GB",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
    resources=(Resource(ARCHIVE_NAMES[KEY], URL, SHA256),),
    scan=MvtecLikeReader(KEY),
    required=RequireCategoryFolders(),
    categories=tuple(MVTEC_AD_DEFECTS),
    notes="The download link has moved twice; the sha256 never changed.",
)
