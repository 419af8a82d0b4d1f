"""Evaluation: answer records, MMAD's scorer and the cross-dataset binary protocol.

- ``records``: the answer-record table (:data:`~eval.records.ANSWERS_SCHEMA`), read from
  MMAD's own answer files, our JSONL or parquet, and written back in MMAD's format.
- ``scoring``: :func:`~eval.scoring.score_mmad` reproduces MMAD's ``caculate_accuracy_mmad``
  cell for cell ("official", quirks included) or scores unparseable answers as wrong
  ("strict"); writes MMAD's ``*_accuracy.csv`` layout.
- ``crossdataset``: binary accuracy and F1-macro per set and per category (AD-FM, LR-IAD) and
  Youden's J threshold for score-based baselines.

Nothing here imports torch or Dagster: scoring runs wherever the answer files are.
"""
