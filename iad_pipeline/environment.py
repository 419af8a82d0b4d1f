"""Where a measurement was made: the CPU and the versions of the packages that compute it.

Training a small model for hundreds of steps amplifies differences in floating-point
kernels (a CPU with AVX-512 against one with AVX2 only) and in the libraries that decode,
resize and tokenize: the demo's learning-set accuracy after SFT was 73.2 % on one 2-core
machine and 59-61 % on another, with the same code and seeds. A number that depends on
its machine says which machine it came from: :func:`environment` is recorded beside the
demo's results (``reports/learning.json``).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# the packages whose versions change what trains and what is asked
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "tokenizers",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "scikit-image",
)
# the vector instruction sets that pick PyTorch's CPU kernels
SIMD = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """The CPU's model name, its vector instruction sets among :data:`SIMD` and the cores
    this process may use (``/proc/cpuinfo`` on Linux; the platform's name elsewhere).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     info = Path(d) / "cpuinfo"
    ...     _ = info.write_text("model name\\t: AMD EPYC\\nflags\\t\\t: fpu sse avx avx2 fma\\n")
    ...     found = cpu(info)
    >>> found["model"], found["simd"]
    ('AMD EPYC', ['avx2'])
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            flags |= set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "simd": [s for s in SIMD if s in flags], "cores": cores}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Each package's installed version (``None``: not installed).

    >>> package_versions(("no-such-package-here",))
    {'no-such-package-here': None}
    """
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def environment() -> dict[str, object]:
    """The CPU, Python and :data:`PACKAGES`' versions of this process."""
    return {
        "cpu": cpu(),
        "python": platform.python_version(),
        "platform": sys.platform,
        "packages": package_versions(),
    }


def describe(env: dict) -> str:
    """One line for a report: the CPU, its vector instruction sets, torch and transformers.

    >>> describe({"cpu": {"model": "AMD EPYC", "simd": ["avx2"], "cores": 2},
    ...           "packages": {"torch": "2.13.0+cpu", "transformers": "5.25.0"}})
    'AMD EPYC (avx2), 2 cores; torch 2.13.0+cpu, transformers 5.25.0'
    """
    machine = env["cpu"]
    simd = ", ".join(machine["simd"]) or "no AVX2"
    packages = env["packages"]
    libs = ", ".join(f"{n} {packages.get(n)}" for n in ("torch", "transformers"))
    return f"{machine['model']} ({simd}), {machine['cores']} cores; {libs}"
