"""Instructions per file of `run --once`, counted by cachegrind: deterministic where the wall clock is noise.

The method of docs/performance.md: `run_once` of N files of the backlog template (default 2,000),
`workers = 1`, logging off (no handler), SQLite store on tmpfs; per file = (the run's instructions -
those of a run on an empty hot folder) / N. Each source tree is measured in turn with PYTHONPATH
pointing at it: the working tree's `src`, and any `--commit REV` exported with `git archive`.

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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = """
import sys
from json_workflow.config import build
from json_workflow.run import run_once
summary = run_once(build({"workers": 1}, "bench", root=sys.argv[1]))
assert summary.pending == 0, summary.line()
"""


def instructions(src: Path, root: Path) -> int:
    """Instructions of one run_once on `root`, under cachegrind (the tree's bytecode compiled before, as an
    installed package's is: compiling it is no part of a run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True, env=env)
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}/cg.out",
             sys.executable, "-c", RUN, str(root)],
            capture_output=True, text=True, check=True,
            env={**env, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"},  # the same run, the same count
        )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def measure(src: Path, template: Path, files: int, scratch: Path) -> tuple[int, int]:
    """(per file, start-up) instructions of the tree at `src`."""
    counts = []
    for hot in (None, template):  # an empty hot folder, then the backlog
        root = scratch / "root"
        shutil.rmtree(root, ignore_errors=True)
        (root / "JSON").mkdir(parents=True)
        if hot is not None:
            shutil.copytree(hot, root / "JSON", dirs_exist_ok=True)
        counts.append(instructions(src, root))
    empty, full = counts
    return (full - empty) // files, empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commit", action="append", default=[], help="also measure this commit (repeatable)")
    parser.add_argument("--dir", default="/dev/shm/jwinstructions", help="scratch folder (tmpfs by default)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from json_workflow.samples import backlog

    scratch = Path(args.dir)
    shutil.rmtree(scratch, ignore_errors=True)
    template = scratch / "template"
    for client, name, data, _ in backlog(args.files, seed=1):
        (template / client).mkdir(parents=True, exist_ok=True)
        (template / client / name).write_bytes(data)
    trees = {"working tree": REPO / "src"}
    for rev in args.commit:
        tree = scratch / f"src-{rev}"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        trees[rev] = tree / "src"
    try:
        for name, src in trees.items():
            per_file, start = measure(src, template, args.files, scratch)
            print(f"{name}: {per_file / 1000:.1f} K instructions per file, start-up {start / 1e6:.0f} M", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
