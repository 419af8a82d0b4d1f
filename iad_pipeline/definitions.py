"""The Dagster code location of iad-pipeline: one Definitions object."""

import dagster as dg

from assets import annotations, evaluation, ingest, knowledge, questions, training
from iad_pipeline.resources import IadConfig, KnowledgeConfig, TrainingLauncher

datasets_job = dg.define_asset_job(
    "datasets",
    selection=dg.AssetSelection.groups("ingest", "annotate", "knowledge")
    | dg.AssetSelection.assets(questions.question_bank),
    description="Per dataset: install it, build its samples, annotations, domain knowledge, "
    "text samples and question bank.",
)
training_sets_job = dg.define_asset_job(
    "training_sets",
    selection=dg.AssetSelection.assets(questions.training_set),
    description="Per training set: split, select, leakage-guard and export for TRL.",
)
training_job = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.assets(training.grpo_run),
    description="Per recipe: GRPO training through Dagster Pipes (the gpu pool runs one).",
)

defs = dg.Definitions(
    assets=[
        ingest.raw_dataset,
        ingest.samples,
        annotations.annotations,
        knowledge.domain_knowledge,
        knowledge.text_samples,
        questions.question_bank,
        questions.training_set,
        training.grpo_run,
        evaluation.mmad_eval,
        evaluation.cross_dataset_eval,
    ],
    sensors=[evaluation.checkpoint_sensor],
    schedules=[evaluation.nightly_reevaluation],
    jobs=[
        datasets_job,
        training_sets_job,
        training_job,
        evaluation.mmad_eval_job,
        evaluation.cross_eval_job,
    ],
    resources={
        "iad": IadConfig(),
        "knowledge": KnowledgeConfig(),
        "launcher": TrainingLauncher(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)

# The code location's name: workspace.yaml and [tool.dg.project] code_location_name say so, so
# `dg dev` and `dagster dev -w workspace.yaml` find the sensor state a tick below recorded.
LOCATION_NAME = "iad_pipeline"


def _sensor_origin(sensor_name: str):
    """The origin the daemon keys a sensor's state by (location, repository, sensor name)."""
    import os

    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name="iad_pipeline.definitions", attribute="defs", working_directory=os.getcwd()
        ),
        location_name=LOCATION_NAME,
    )
    repository = RemoteRepositoryOrigin(location, "__repository__")
    return RemoteInstigatorOrigin(repository, sensor_name)


def tick_sensor(
    instance: dg.DagsterInstance, sensor_name: str = "checkpoint_sensor"
) -> tuple[list[dg.RunRequest], str | None]:
    """Evaluate a sensor once the way the daemon does, and record it the way the daemon does.

    The cursor is read from, and written back to, the sensor's state in ``instance`` (the
    state the daemon of ``make ui`` reads); new dynamic partitions are added. Returns the run
    requests and a skip message (``None`` when there are requests). Launch each request with
    :func:`daemon_run_tags`, so the daemon also recognises the runs by their run keys.
    """
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        SensorInstigatorData,
    )
    from dagster._time import get_current_timestamp

    sensor = defs.resolve_sensor_def(sensor_name)
    origin = _sensor_origin(sensor_name)
    selector_id = origin.get_selector().get_id()
    state = instance.get_instigator_state(origin.get_id(), selector_id)
    data = state.instigator_data if state is not None else None
    cursor = data.cursor if isinstance(data, SensorInstigatorData) else None
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"iad": IadConfig()}
    ) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        requests, skip, new_cursor = [], result.skip_message, cursor
    else:
        for add in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        requests, skip, new_cursor = list(result.run_requests), None, result.cursor
    now = get_current_timestamp()
    run_keys = [r.run_key for r in requests if r.run_key]
    new_data = SensorInstigatorData(
        last_tick_timestamp=now,
        last_run_key=run_keys[-1] if run_keys else getattr(data, "last_run_key", None),
        min_interval=sensor.minimum_interval_seconds,
        cursor=new_cursor,
        last_tick_start_timestamp=now,
        last_sensor_start_timestamp=getattr(data, "last_sensor_start_timestamp", None) or now,
        sensor_type=sensor.sensor_type,
    )
    if state is None:
        instance.add_instigator_state(
            InstigatorState(
                origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE, new_data
            )
        )
    else:
        instance.update_instigator_state(state.with_data(new_data))
    return requests, skip


def daemon_run_tags(request: dg.RunRequest, sensor_name: str = "checkpoint_sensor") -> dict:
    """The tags the daemon gives a sensor's run: its run key (deduplicated forever) and the
    sensor's name, plus the request's own tags."""
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

    tags = dict(request.tags)
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
    tags[SENSOR_NAME_TAG] = sensor_name
    return tags
