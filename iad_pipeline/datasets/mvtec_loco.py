"""MVTec LOCO AD: logical and structural anomalies, 5 categories.

Reference: Bergmann et al., "Beyond Dents and Scratches: Logical Constraints in Unsupervised
Anomaly Detection and Localization", IJCV 2022.
https://www.mvtec.com/company/research/datasets/mvtec-loco
Licence: CC BY-NC-SA 4.0 (acceptance required).

Layout: ``<cat>/{train,validation}/good``, ``<cat>/test/{good,logical_anomalies,
structural_anomalies}``, ``<cat>/ground_truth/<type>/<stem>/000.png, 001.png...`` (one folder
per image, one mask per annotated region, pixel values from ``defects_config.json``, not 255:
binarise with ``> 0``). The validation split is reported as ``val``. Published: 3,644 images;
third parties count a few more in the current archive, so no count is asserted.
"""

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, MVTEC_LOCO_DEFECTS
from iad_pipeline.datasets.layout import MvtecLikeReader, RequireCategoryFolders
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "mvtec_loco"
URL = (
    "https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/"
    "430647091-1646842701/mvtec_loco_anomaly_detection.tar.xz"
)
SHA256 = "9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687"

SPEC = DatasetSpec(
    key=KEY,
    name="MVTec LOCO AD",
    licence="CC BY-NC-SA 4.0",
    needs_acceptance=True,
    manual=False,
    size="unknown",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-loco",
    resources=(Resource(ARCHIVE_NAMES[KEY], URL, SHA256),),
    scan=MvtecLikeReader(KEY),
    required=RequireCategoryFolders(("train/good", "test", "ground_truth")),
    categories=tuple(MVTEC_LOCO_DEFECTS),
)
