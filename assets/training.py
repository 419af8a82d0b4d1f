"""Training assets: a run per recipe (its stages: SFT, GRPO), launched as a subprocess through
Dagster Pipes."""

import sys

import dagster as dg

from assets.questions import training_set
from iad_pipeline.resources import IadConfig, TrainingLauncher
from training.config import recipe_training_sets

RECIPE_SETS = recipe_training_sets()
recipes_partitions = dg.StaticPartitionsDefinition(sorted(RECIPE_SETS))
# upstream training_set key -> the recipes that train on it
RECIPES_BY_SET = {
    ts: {r for r, s in RECIPE_SETS.items() if s == ts} for ts in set(RECIPE_SETS.values())
}


@dg.asset(
    partitions_def=recipes_partitions,
    deps=[dg.AssetDep(training_set, partition_mapping=dg.StaticPartitionMapping(RECIPES_BY_SET))],
    group_name="training",
    kinds={"trl", "pytorch"},
    pool="gpu",
    description="Training of a recipe (training/recipes/<name>.yaml) on its training set, stage "
    "by stage (sft, then grpo, each from the previous stage's final checkpoint), run by "
    "training/grpo.py through Dagster Pipes; resumes in the stage that was running from its "
    "newest complete checkpoint (DIR/<stage>/checkpoint-<step>/ with a DONE marker). "
    "Metadata: the final stage's figures plus <stage>/steps, <stage>/final_mean_reward, "
    "<stage>/final_loss, ... per stage.",
    code_version="2",
)
def grpo_run(
    context: dg.AssetExecutionContext,
    iad: IadConfig,
    launcher: TrainingLauncher,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    recipe = context.partition_key
    output = iad.layout().run(recipe)
    script = [
        "-m",
        "training.grpo",
        "--recipe",
        recipe,
        "--output",
        str(output),
        "--resume",
        "--training-set",
        str(iad.layout().training_set_hf(RECIPE_SETS[recipe])),
    ]
    if launcher.max_steps is not None:
        script += ["--max-steps", str(launcher.max_steps)]
    if launcher.launcher == "accelerate":
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(launcher.num_processes),
            *launcher.extra_args,
            *script,
        ]
    else:
        command = [sys.executable, *script]
    env = {"IAD_PROFILE": iad.resolved_profile(), "IAD_HOME": str(iad.home_dir())}
    if launcher.launcher == "ray":  # the same script as a Ray job on Ray Train workers
        from assets.ray_launch import launch_training_on_ray

        return launch_training_on_ray(context, launcher.ray, script, env)
    return pipes_subprocess_client.run(
        command=command, context=context, env=env
    ).get_materialize_result()
