"""Every shell command of the README runs, in order, on a fresh home.

Commands are the lines of the README's ```bash blocks. A command that needs what a test
cannot have carries a trailing ``# needs: <what>`` comment with one of :data:`NEEDS`; every
other command must succeed. They run in one bash session (``set -euo pipefail``) in a
temporary folder, with ``.venv`` linked to the interpreter's environment and ``IAD_HOME`` in
that folder.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# what a skipped command may need: a network, a GPU, a server that runs until stopped, many
# minutes (the full demo and test suite), or the files `make demo` leaves (training sets,
# checkpoints)
NEEDS = {"network", "gpu", "server", "minutes", "demo"}
NEEDS_RE = re.compile(r"#\s*needs:\s*([a-z]+)")


def readme_commands(text: str) -> list[tuple[str, str | None]]:
    """``(command, need)`` for every line of every ```bash block, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        # a line ending in a backslash continues on the next, as in the shell
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            need = NEEDS_RE.search(line)
            commands.append((line.strip(), need.group(1) if need else None))
    return commands


def test_readme_markers_name_known_needs() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert commands
    unknown = {need for _, need in commands if need and need not in NEEDS}
    assert not unknown, f"unknown '# needs:' markers {unknown}; known: {sorted(NEEDS)}"
    # the offline commands are the README's main path, not an exception
    assert sum(need is None for _, need in commands) >= 10


@pytest.mark.slow
def test_every_offline_readme_command_runs(tmp_path) -> None:
    commands = [c for c, need in readme_commands(README.read_text(encoding="utf-8")) if not need]
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    lines = ["set -euo pipefail"]
    for i, command in enumerate(commands):
        lines.append(f"echo '### {i}' >&2")
        lines.append(command)
    env = {
        "PATH": f"{work / '.venv' / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "IAD_HOME": str(work / ".iad"),
        "HOME": str(tmp_path),
        "COLUMNS": "80",
    }
    for key in ("LANG", "LC_ALL"):
        if key in os.environ:
            env[key] = os.environ[key]
    proc = subprocess.run(
        ["bash", "-c", "\n".join(lines)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reached = [int(m) for m in re.findall(r"^### (\d+)$", proc.stderr, flags=re.M)]
    failed = commands[reached[-1]] if reached else "(none ran)"
    assert proc.returncode == 0, f"README command failed: {failed}\n{proc.stderr[-3000:]}"
    assert reached[-1] == len(commands) - 1
    assert "dtd_synthetic" in proc.stdout  # `iad datasets list | grep dtd_synthetic`
    assert (work / "visa_mmad.json").is_file() and (work / "loc.parquet").is_file()
