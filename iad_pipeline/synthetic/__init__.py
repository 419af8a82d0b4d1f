"""Synthetic datasets written exactly in each real dataset's on-disk layout.

Our machines have no internet, so the demo and the tests run on procedurally drawn copies of
MVTec AD, VisA (raw), MVTec LOCO AD, GoodsAD, MPDD, MVTec 3D-AD, DTD-Synthetic, DAGM 2007 and
a mini MMAD, with exact masks, packed in each real archive format.

- :func:`synthesize` writes one dataset and returns a :class:`SynthReport` (the manifest
  layout readers are tested against).
- :func:`pack_archive` packs it reproducibly (fixed times and owners, sorted members).
"""

from iad_pipeline.synthetic.archive import pack_archive
from iad_pipeline.synthetic.build import synthesize
from iad_pipeline.synthetic.report import SynthImage, SynthReport

__all__ = ["SynthImage", "SynthReport", "pack_archive", "synthesize"]
