"""GRPO training of a recipe on a Ray cluster: a Ray job whose driver runs Ray Train workers.

The same script as everywhere else trains: every Ray Train worker (``TorchTrainer``; gloo on
CPU, NCCL on GPUs) calls :func:`training.grpo.main` with the same arguments, so TRL's trainer,
the difficulty-aware trainer, the rewards and the checkpoint layout (``checkpoint-<step>/`` +
``DONE``) are the ones of ``python``/``accelerate launch``. Ray Train sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the process group; Hugging Face's trainer joins it, rank 0
saves. ``--output`` must be a path every worker reaches (one machine: any folder; a cluster:
a shared file system such as NFS or a mounted bucket, the same path on every node).

Two modes:

- ``run`` is the job's entrypoint (what runs on the cluster): ``ray.init()`` joins the
  cluster, builds the tiny model once when the recipe asks for it, trains on N workers and
  reports. Launched by Dagster (``PipesRayJobClient``), the driver is the Pipes process: the
  workers' logs stream back through the job log and the driver reports the rank-0 summary
  (steps, reward, checkpoint) as the materialization. A killed job resumes from the newest
  complete checkpoint when run again with ``--resume``.
- ``submit`` submits ``run`` as a Ray job to ``--address`` and follows its log (``iad train
  --launcher ray`` uses it): the same job without Dagster.

    python -m training.ray_train submit --address auto --workers 2 -- \\
        --recipe demo --output /shared/runs/demo --resume
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from iad_pipeline.errors import IadError

log = logging.getLogger("training.ray_train")

SUMMARY_KEY = "iad_training_summary"
# environment the job carries from the submitter when set there (a local cluster's workers
# then import this checkout and write under the same data root)
FORWARDED_ENV = ("PYTHONPATH", "IAD_HOME", "IAD_PROFILE", "HF_HOME", "HF_HUB_OFFLINE")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class RayLaunchError(IadError, RuntimeError):
    """A Ray cluster that cannot be reached, or a Ray job that failed."""


# -- shared by the Dagster launcher and ``submit`` -------------------------------------------


def is_local(address: str | None) -> bool:
    """Whether ``address`` is a cluster on this machine (its workers can run this interpreter).

    >>> [is_local(a) for a in (None, "auto", "http://127.0.0.1:8265", "ray-head:8265")]
    [True, True, True, False]
    """
    if address is None or address == "auto":
        return True
    host = urlparse(address if "://" in address else f"http://{address}").hostname
    return host in LOOPBACK


def job_entrypoint(
    grpo_args: Sequence[str],
    *,
    num_workers: int,
    use_gpu: bool = False,
    resources_per_worker: Mapping[str, float] | None = None,
    python: str = "python",
) -> str:
    """The shell command of the Ray job: ``python -m training.ray_train run ... -- GRPO_ARGS``.

    >>> job_entrypoint(["--recipe", "demo", "--output", "/r/demo"], num_workers=2)
    'python -m training.ray_train run --workers 2 -- --recipe demo --output /r/demo'
    """
    command = [python, "-m", "training.ray_train", "run", "--workers", str(num_workers)]
    if use_gpu:
        command.append("--use-gpu")
    if resources_per_worker:
        command += ["--resources-per-worker", json.dumps(dict(resources_per_worker))]
    return shlex.join([*command, "--", *grpo_args])


def job_runtime_env(extra_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job's runtime environment: the forwarded variables that are set, plus ``extra_env``."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    # Ray Train logs every print of a worker, even one a library captures (dill disassembles
    # functions into a captured stdout while datasets hashes them): plain prints instead
    env["RAY_TRAIN_ENABLE_PRINT_PATCH"] = "0"
    env.update(extra_env or {})
    return {"env_vars": env}


def require_ray() -> None:
    """A one-line error when Ray is not installed (it is an extra of the package)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        msg = "the ray launcher needs Ray: pip install 'iad-pipeline[ray]'"
        raise RayLaunchError(msg)


def job_client(address: str | None):
    """A ``JobSubmissionClient`` for ``address``; ``None`` starts a local cluster first.

    ``auto`` finds the cluster ``ray start`` started on this machine; otherwise a dashboard
    URL (``http://HOST:8265``) or a cluster address. A cluster that does not answer raises
    :class:`RayLaunchError` with one line naming the address.
    """
    require_ray()
    from ray.job_submission import JobSubmissionClient

    if address is None:
        import ray
        from ray._private.worker import get_dashboard_url

        if not ray.is_initialized():
            ray.init(include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
        url = get_dashboard_url()
        if not url:
            msg = "ray address None: the local Ray cluster started without its dashboard"
            raise RayLaunchError(msg)
        address = url if "://" in url else f"http://{url}"
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ray raises ConnectionError, ValueError or RuntimeError here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = (
            f"ray address {address!r}: no Ray job server answers there ({reason[:200]}); "
            "start a cluster with `ray start --head --include-dashboard=true` or pass the "
            "head node's dashboard URL (http://HOST:8265)"
        )
        raise RayLaunchError(msg) from None


# -- ``run``: inside the job ------------------------------------------------------------------


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the recipe's training script on this rank."""
    # the job's Pipes variables reach every worker; the driver alone reports to Dagster
    for key in [k for k in os.environ if k.startswith("DAGSTER_PIPES")]:
        os.environ.pop(key)
    from training import grpo

    code = grpo.main(config["grpo_args"])
    if code != 0:
        msg = f"training/grpo.py exited with {code} on rank {grpo.rank()}"
        raise RayLaunchError(msg)


def train_on_ray(
    grpo_args: Sequence[str],
    *,
    num_workers: int,
    use_gpu: bool = False,
    resources_per_worker: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Train on ``num_workers`` Ray Train workers and return the rank-0 summary.

    Must run where ``ray.init()`` reaches the cluster (a Ray job's driver, or a local one).
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from training import grpo
    from training.config import OFFLINE_QWEN, load_recipe
    from training.report import run_summary

    if num_workers < 1:
        msg = f"--workers {num_workers}: expected at least 1 Ray Train worker"
        raise RayLaunchError(msg)
    args = grpo.parse_args(list(grpo_args))
    recipe = load_recipe(args.recipe)
    output = Path(args.output).absolute()
    grpo_args = _absolute_paths(grpo_args)
    if recipe.model in OFFLINE_QWEN:
        # built once here, not by N workers racing for the same folder
        from training.model_setup import offline_qwen

        offline_qwen(recipe.model, Path(args.model_dir).absolute() if args.model_dir else output)
    if not ray.is_initialized():
        ray.init()
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"grpo_args": list(grpo_args)},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker=dict(resources_per_worker) if resources_per_worker else None,
        ),
        run_config=RunConfig(
            name=f"{recipe.name}-{int(time.time())}",
            storage_path=str(output / ".ray"),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    log.info("recipe %s: %d Ray Train workers (%s)", recipe.name, num_workers, _device(use_gpu))
    try:
        trainer.fit()
    except Exception as exc:
        msg = f"recipe {recipe.name}: Ray Train failed ({type(exc).__name__}: {exc})"
        raise RayLaunchError(msg.splitlines()[0]) from exc
    return run_summary(recipe, output)


def _device(use_gpu: bool) -> str:
    return "NCCL, one GPU each" if use_gpu else "gloo, CPU"


def _absolute_paths(grpo_args: Sequence[str]) -> list[str]:
    """Path options made absolute: workers do not start in the submitter's folder."""
    out = list(grpo_args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--output", "--training-set", "--model-dir"):
            out[i + 1] = str(Path(out[i + 1]).absolute())
    return out


def run(argv: argparse.Namespace) -> int:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    resources = json.loads(argv.resources_per_worker) if argv.resources_per_worker else None
    with contextlib.ExitStack() as stack:
        # the job's driver is the Pipes process: a failure below is reported to Dagster too
        pipes = (
            stack.enter_context(open_dagster_pipes())
            if DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
            else None
        )
        if pipes:
            pipes.log.info(f"training on {argv.workers} Ray Train workers")
        result = train_on_ray(
            argv.grpo_args,
            num_workers=argv.workers,
            use_gpu=argv.use_gpu,
            resources_per_worker=resources,
        )
        print(json.dumps({SUMMARY_KEY: result}), flush=True)
        if pipes:
            from training import grpo
            from training.config import load_recipe
            from training.report import run_data_version, run_metadata

            recipe = load_recipe(grpo.parse_args(argv.grpo_args).recipe)
            pipes.report_asset_materialization(
                metadata={**run_metadata(recipe, result), "ray_workers": argv.workers},
                data_version=run_data_version(result),
            )
    return 0


# -- ``submit``: from a shell --------------------------------------------------------------


def submit(argv: argparse.Namespace) -> int:
    """Submit ``run`` as a Ray job, print its log as it comes, return 0 when it succeeded."""
    import asyncio

    from ray.job_submission import JobStatus

    client = job_client(argv.address)
    entrypoint = job_entrypoint(
        _absolute_paths(argv.grpo_args),
        num_workers=argv.workers,
        use_gpu=argv.use_gpu,
        resources_per_worker=json.loads(argv.resources_per_worker)
        if argv.resources_per_worker
        else None,
        python=sys.executable if is_local(argv.address) else "python",
    )
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=job_runtime_env())
    print(f"ray job {job_id} submitted to {client.get_address()}", file=sys.stderr, flush=True)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    try:
        asyncio.run(follow())
        while not (status := client.get_job_status(job_id)).is_terminal():
            time.sleep(0.5)
    except KeyboardInterrupt:
        client.stop_job(job_id)
        raise
    if status != JobStatus.SUCCEEDED:
        info = client.get_job_info(job_id)
        reason = (info.message or "").strip().splitlines()
        msg = f"ray job {job_id} {status.value.lower()}: {reason[0] if reason else 'see the log'}"
        raise RayLaunchError(msg)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GRPO training of a recipe on Ray.")
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode in ("run", "submit"):
        p = modes.add_parser(mode)
        if mode == "submit":
            p.add_argument(
                "--address",
                default="auto",
                help="the cluster: auto (the one `ray start` started here), a dashboard URL "
                "(http://HOST:8265); 'local' starts one for this job",
            )
        p.add_argument("--workers", type=int, default=1, help="Ray Train workers")
        p.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL")
        p.add_argument(
            "--resources-per-worker", help='JSON, e.g. {"CPU": 4, "GPU": 1} (default 1 CPU)'
        )
        p.add_argument("grpo_args", nargs=argparse.REMAINDER, help="-- training/grpo.py options")
    args = parser.parse_args(argv)
    if args.grpo_args[:1] == ["--"]:
        args.grpo_args = args.grpo_args[1:]
    if getattr(args, "address", None) == "local":
        args.address = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        return run(args) if args.mode == "run" else submit(args)
    except IadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
