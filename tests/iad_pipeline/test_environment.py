"""The machine a demo measurement came from is recorded with it (reports/learning.json)."""

import json
from importlib.metadata import version

from iad_pipeline.environment import PACKAGES, cpu, describe, environment


def test_the_environment_names_the_cpu_its_vector_sets_and_the_package_versions(tmp_path) -> None:
    env = environment()
    json.dumps(env)  # it goes into a JSON report as it is
    assert env["packages"]["torch"] == version("torch")
    assert env["packages"]["transformers"] == version("transformers")
    assert set(env["packages"]) == set(PACKAGES)
    # every name is a distribution the project installs (a wrong name would say "None")
    assert None not in env["packages"].values(), env["packages"]
    assert env["cpu"]["cores"] >= 1 and env["cpu"]["model"]
    line = describe(env)
    assert f"torch {version('torch')}" in line and f"transformers {version('transformers')}" in line


def test_avx512_and_avx2_only_machines_are_told_apart(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: sse avx avx2 avx512f avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Intel Xeon\nflags\t\t: sse avx avx2 avx512f avx512_bf16\n"
    )
    assert cpu(info)["simd"] == ["avx2", "avx512f", "avx512_bf16"]
    info.write_text("model name\t: AMD EPYC\nflags\t\t: sse avx\n")
    found = cpu(info)
    assert found["simd"] == [] and found["model"] == "AMD EPYC"
    env = {"cpu": found, "packages": {"torch": "2.13.0", "transformers": "5.25.0"}}
    assert describe(env).startswith("AMD EPYC (no AVX2)")
    # no /proc/cpuinfo (macOS, Windows): the platform's own name, no sets
    assert cpu(tmp_path / "missing")["simd"] == []
