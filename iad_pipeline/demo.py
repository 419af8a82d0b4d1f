"""``make demo``: run the pipeline's main job on the demo profile, every dataset partition.

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (the Makefile sets it to
``$IAD_HOME/dagster``), so ``make ui`` shows them, with their metadata and checks, afterwards.
"""

from __future__ import annotations

import os
import sys

import dagster as dg
from rich.console import Console
from rich.table import Table

from iad_pipeline.datasets.catalog import DATASET_KEYS

console = Console()
# Step-by-step events stay in the run's event log (see them in the UI); the terminal gets
# warnings and the summary table.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def main() -> int:
    os.environ.setdefault("IAD_PROFILE", "demo")
    from iad_pipeline.definitions import defs

    job = defs.resolve_job_def("ingest")
    table = Table(title=f"ingest on the {os.environ['IAD_PROFILE']} profile")
    for column in ("dataset", "run", "samples", "anomalous", "quarantine", "checks"):
        table.add_column(column)
    failed = 0
    with _instance() as instance:
        for key in DATASET_KEYS:
            console.print(f"[bold]{key}[/bold]: installing and reading samples...")
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_LOGS
            )
            meta = {}
            mats = result.asset_materializations_for_node("samples")
            if mats:
                meta = {k: v.value for k, v in mats[0].metadata.items()}
            evals = result.get_asset_check_evaluations()
            passed = sum(e.passed for e in evals)
            failed += (not result.success) + (len(evals) - passed)
            table.add_row(
                key,
                "ok" if result.success else "FAILED",
                str(meta.get("dagster/row_count", "-")),
                str(meta.get("anomalous", "-")),
                str(meta.get("quarantine_rows", "-")),
                f"{passed}/{len(evals)}",
            )
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
