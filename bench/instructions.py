"""Instructions per file of `run --once`, counted by cachegrind: deterministic where the wall clock is noise.

The method of docs/performance.md: `run_once` of N files of the backlog template (default 2,000),
`workers = 1`, `processes = 1`, logging off (no handler), SQLite store on tmpfs; per file = (the run's
instructions - those of a run on an empty hot folder) / N. Each source tree is built into a venv of
its own (`pip install`, as an operator installs it: its own dependencies, its bytecode compiled) and
measured there: the working tree, and any `--commit REV` exported with `git archive`. A commit's venv
is kept in the scratch folder's `venvs/` for the next run (`--fresh` builds them again).

    python bench/instructions.py                          # the working tree
    python bench/instructions.py --commit f1028fa         # ... and that commit, side by side
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
RUN = """
import sys
from json_workflow.config import build
from json_workflow.run import run_once
settings = {"workers": 1, "processes": 1}
try:
    config = build(settings, "bench", root=sys.argv[1])
except Exception:  # a commit from before `processes`: one process was all there was
    config = build({"workers": 1}, "bench", root=sys.argv[1])
summary = run_once(config)
assert summary.pending == 0, summary.line()
"""
# A threshold over which a change to the per-file path is explained or fixed before it lands (issue 22).
REGRESSION = 0.03
T = TypeVar("T")


def venv_for(tree: Path, venv: Path) -> Path:
    """The python of `venv` with the package at `tree` installed (the venv made first if need be)."""
    python = venv / "bin" / "python"
    quiet = ["--quiet", "--disable-pip-version-check"]
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([python, "-m", "pip", "install", *quiet, str(tree)], check=True)
    else:  # the package itself again, and only the dependencies it added since
        subprocess.run(
            [python, "-m", "pip", "install", *quiet, "--no-deps", "--force-reinstall", str(tree)], check=True
        )
        subprocess.run([python, "-m", "pip", "install", *quiet, str(tree)], check=True)
    return python


def instructions(python: Path, root: Path) -> int:
    """Instructions of one run_once on `root` by the venv's `python`, under cachegrind."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}/cg.out",
             str(python), "-c", RUN, str(root)],
            capture_output=True, text=True, check=True,
            env={**env, "PYTHONHASHSEED": "0"},  # the same run, the same count
        )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def runs_of(count: Callable[[Path, Path], T], python: Path, template: Path, scratch: Path) -> tuple[T, T]:
    """`count(python, root)` on an empty hot folder, then on the backlog `template`."""
    counts = []
    for hot in (None, template):
        root = scratch / "root"
        shutil.rmtree(root, ignore_errors=True)
        (root / "JSON").mkdir(parents=True)
        if hot is not None:
            shutil.copytree(hot, root / "JSON", dirs_exist_ok=True)
        counts.append(count(python, root))
    return counts[0], counts[1]


def measure(python: Path, template: Path, files: int, scratch: Path) -> tuple[int, int]:
    """(per file, start-up) instructions of the package installed for `python`."""
    empty, full = runs_of(instructions, python, template, scratch)
    return (full - empty) // files, empty


def trees(scratch: Path, files: int, commits: list[str], fresh: bool = False) -> tuple[dict[str, Path], Path]:
    """The python of each tree's venv (the working tree first, then each commit) and the backlog template."""
    sys.path.insert(0, str(REPO / "src"))
    from json_workflow.samples import backlog

    venvs = scratch / "venvs"
    if fresh:
        shutil.rmtree(venvs, ignore_errors=True)
    for kept in scratch.glob("*"):
        if kept != venvs:
            shutil.rmtree(kept) if kept.is_dir() else kept.unlink()
    template = scratch / "template"
    for client, name, data, _ in backlog(files, seed=1):
        (template / client).mkdir(parents=True, exist_ok=True)
        (template / client / name).write_bytes(data)
    pythons = {"working tree": venv_for(REPO, venvs / "working-tree")}
    for rev in commits:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", rev], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        tree = scratch / f"tree-{sha}"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        pythons[rev] = venv_for(tree, venvs / sha)
    return pythons, template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commit", action="append", default=[], help="also measure this commit (repeatable)")
    parser.add_argument("--dir", default="/dev/shm/jwinstructions", help="scratch folder (tmpfs by default)")
    parser.add_argument("--fresh", action="store_true", help="build the commits' venvs again")
    args = parser.parse_args()
    scratch = Path(args.dir)
    pythons, template = trees(scratch, args.files, args.commit, args.fresh)
    figures = {}
    for name, python in pythons.items():
        per_file, start = measure(python, template, args.files, scratch)
        figures[name] = per_file
        print(f"{name}: {per_file / 1000:.1f} K instructions per file, start-up {start / 1e6:.0f} M", flush=True)
    base = figures["working tree"]
    for rev in args.commit:
        change = base / figures[rev] - 1
        verdict = "a regression to explain or fix before it lands" if change > REGRESSION else "within the guard"
        print(f"working tree against {rev}: {change:+.1%} ({verdict}, over {REGRESSION:.0%} is not)")


if __name__ == "__main__":
    main()
