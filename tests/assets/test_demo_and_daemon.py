"""The demo's sensor tick is recorded as the daemon records one: `make ui` has nothing to redo.

The daemon part runs in a fresh interpreter: it loads the code location through a gRPC server
as `dg dev` does, and Dagster's global load context must not outlive other tests' instances.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from pathlib import Path

    import dagster as dg
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._time import get_current_timestamp
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    from iad_pipeline.definitions import LOCATION_NAME, daemon_run_tags, tick_sensor
    from iad_pipeline.paths import Layout

    runs = Layout.resolve().runs
    for step in (2, 4):  # two complete checkpoints, as a demo training leaves them
        folder = runs / "demo" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "DONE").write_text(json.dumps({"step": step}))

    out = {}
    with dg.DagsterInstance.get() as instance:  # the demo's tick, in-process
        requests, skip = tick_sensor(instance)
        out["demo_requests"] = len(requests)
        out["tags"] = daemon_run_tags(requests[0])
        out["partitions"] = sorted(instance.get_dynamic_partitions("checkpoints"))

    with dg.DagsterInstance.get() as instance:  # `make ui`: the daemon ticks the sensor
        target = ModuleTarget(
            module_name="iad_pipeline.definitions",
            attribute="defs",
            working_directory=sys.argv[1],
            location_name=LOCATION_NAME,
        )
        later = get_current_timestamp() + 120  # past the sensor's 60 s minimum interval
        with freeze_time(later), create_test_daemon_workspace_context(target, instance) as ctx:
            list(execute_sensor_iteration(ctx, logging.getLogger("test"), None, None))
        states = [
            s for s in instance.all_instigator_state() if s.name == "checkpoint_sensor"
        ]
        ticks = instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id)
        out["states"] = len(states)
        out["ticks"] = [t.status.value for t in ticks]
        out["daemon_runs"] = [t.run_ids for t in ticks]
        out["skip"] = [t.skip_reason for t in ticks]
        out["runs_in_instance"] = len(instance.get_runs())
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_after_a_demo_tick_the_daemon_requests_nothing(tmp_path) -> None:
    home = tmp_path / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "IAD_HOME": str(home),
            "IAD_PROFILE": "demo",
            "DAGSTER_HOME": str(dagster_home),
            "HOME": str(tmp_path),
        },
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(found[-1].removeprefix("RESULT "))
    assert out["demo_requests"] > 0
    assert out["partitions"] == ["demo-2", "demo-4"]
    assert out["tags"]["dagster/sensor_name"] == "checkpoint_sensor"
    assert out["tags"]["dagster/run_key"].startswith("mmad_evaluation:demo-2:")
    # one sensor state, shared by the demo and the daemon; the daemon's tick requested nothing
    assert out["states"] == 1
    assert out["ticks"][0] == "SKIPPED", out
    assert out["daemon_runs"][0] == []
    assert "no new or changed checkpoint" in out["skip"][0]
    assert out["runs_in_instance"] == 0
