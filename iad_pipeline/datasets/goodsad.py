"""GoodsAD (PKU-GoodsAD): 6 categories of retail goods photographed on shelves.

Reference: Zhang et al., "PKU-GoodsAD: A Supermarket Goods Dataset for Unsupervised Anomaly
Detection and Segmentation", IEEE RA-L 2024. https://github.com/jianzhang96/GoodsAD
Licence: the repository is GPL-3.0 and states no separate data licence, so acceptance is
required. Manual download (per-category OneDrive / Baidu archives, 12.3 GB).

Layout: MVTec AD's, 3000x3000 ``.jpg`` images, ``ground_truth/<defect>/<stem>.png`` masks.
Published counts: 3,136 train / 1,328 test good / 1,660 test defective.
"""

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, GOODSAD_DEFECTS
from iad_pipeline.datasets.layout import MvtecLikeReader, RequireCategoryFolders
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "goodsad"

SPEC = DatasetSpec(
    key=KEY,
    name="GoodsAD",
    licence="GPL-3.0 (repository; no separate data licence stated)",
    needs_acceptance=True,
    manual=True,
    size="12.3 GB",
    homepage="https://github.com/jianzhang96/GoodsAD",
    resources=(Resource(ARCHIVE_NAMES[KEY]),),
    scan=MvtecLikeReader(KEY),
    required=RequireCategoryFolders(),
    categories=tuple(GOODSAD_DEFECTS),
    manual_instructions=(
        "Download the six category archives linked from https://github.com/jianzhang96/GoodsAD, "
        "extract them into one folder, then run: "
        "iad datasets fetch goodsad --from PATH --accept-license"
    ),
)
