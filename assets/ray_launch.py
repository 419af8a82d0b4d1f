"""Launching training on a Ray cluster from Dagster: a Ray job through ``dagster_ray``'s Pipes.

``grpo_run`` with ``TrainingLauncher(launcher="ray", ray=RaySection(...))`` hands its
training/grpo.py arguments to :func:`launch_training_on_ray`, which submits
``python -m training.ray_train run --workers N -- ARGS`` as a Ray job with
``PipesRayJobClient``: the job's log (every Ray Train worker's output) streams into the
Dagster run, and the job's driver reports the rank-0 summary (steps, reward, checkpoint) as
the materialization, as the subprocess launcher does. On Kubernetes the same job runs on a
KubeRay cluster: point ``ray.address`` at the head service's dashboard
(``http://<cluster>-head-svc:8265``), or submit deploy/rayjob.yaml (``PipesKubeRayJobClient``
in production, see the README).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import dagster as dg

from iad_pipeline.resources import RaySection

GRPO_MODULE = ["-m", "training.grpo"]


def training_job(
    ray: RaySection, grpo_args: Sequence[str], env: Mapping[str, str] | None = None
) -> dict:
    """``submit_job`` parameters of the training job: entrypoint and runtime environment."""
    from training.ray_train import is_local, job_entrypoint, job_runtime_env

    args = list(grpo_args)
    if args[:2] == GRPO_MODULE:  # grpo_run's python arguments
        args = args[2:]
    entrypoint = job_entrypoint(
        args,
        num_workers=ray.num_workers,
        use_gpu=ray.use_gpu,
        resources_per_worker=ray.resources_per_worker,
        # a cluster on this machine runs this interpreter; a remote one its image's python
        python=sys.executable if is_local(ray.address) else "python",
    )
    return {"entrypoint": entrypoint, "runtime_env": job_runtime_env(env)}


def ray_job_client(ray: RaySection):
    """The Pipes client of ``ray.address`` (checked first: a one-line ``Failure`` naming it)."""
    from dagster_ray import PipesRayJobClient

    from training.ray_train import RayLaunchError, job_client

    try:
        address = job_client(ray.address).get_address()
    except RayLaunchError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return PipesRayJobClient(address=address, poll_interval=0.5)


def launch_training_on_ray(
    context: dg.AssetExecutionContext,
    ray: RaySection,
    grpo_args: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> dg.MaterializeResult:
    """Run training/grpo.py's ``grpo_args`` as a Ray job on ``ray.num_workers`` workers."""
    client = ray_job_client(ray)
    params = training_job(ray, grpo_args, env)
    context.log.info(f"ray job: {params['entrypoint']}")
    try:
        invocation = client.run(context=context, submit_job_params=params)
    except RuntimeError as exc:  # the job failed or was stopped
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise dg.Failure(" ".join(lines[:2]) or "the Ray job failed", allow_retries=True) from None
    return invocation.get_materialize_result()
