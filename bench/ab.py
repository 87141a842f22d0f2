#!/usr/bin/env python3
"""A/B: CPU seconds of `run --once` for two source trees on one template, alternating round by round.

The backlog benchmark's ratio moves by ±15 % between series on a shared machine; a change that
costs a few percent per file shows only when two builds take turns on the same files. CPU time
(user + sys of the child) is steadier than wall time; the minimum is the least disturbed sample.

    git worktree add /tmp/before HEAD~3
    python bench/ab.py --dir /dev/shm/jwab before=/tmp/before/src after=src [--rounds 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from json_workflow import samples

# Logging at ERROR: the run's per-file lines would measure the terminal, not the code.
RUN = """
import logging, sys
from pathlib import Path
from json_workflow import logs
from json_workflow.config import build
try:
    from json_workflow.run import run_once
except ImportError:  # a build from before json_workflow/run.py
    from json_workflow.pipeline import run_once
root = Path(sys.argv[1])
(root / "logs").mkdir()
logs.setup(root / "logs", logging.ERROR)
run_once(build({"workers": int(sys.argv[2])}, "bench", root=root))
"""


def make_template(folder: Path, files: int) -> None:
    for client, name, data, _valid in samples.backlog(files, seed=1, bad_every=97):
        (folder / "JSON" / client).mkdir(parents=True, exist_ok=True)
        (folder / "JSON" / client / name).write_bytes(data)


def one_run(template: Path, root: Path, source: str, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of one `run_once` over a fresh copy of the template."""
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["cp", "-r", str(template), str(root)], check=True)
    os.sync()
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    env = {**os.environ, "PYTHONPATH": source}
    # stderr dropped: the backlog's invalid files are logged as errors, by design
    subprocess.run([sys.executable, "-c", RUN, str(root), str(workers)], check=True, env=env, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs=2, metavar="NAME=SRC", help="a name and the src folder to import from")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    builds = dict(build.split("=", 1) for build in args.builds)
    template = args.dir / f"template-{args.files}"
    if not template.exists():
        make_template(template, args.files)
    samples_of: dict[str, list[tuple[float, float]]] = {name: [] for name in builds}
    try:
        for _ in range(args.rounds):
            for name, source in builds.items():
                samples_of[name].append(one_run(template, args.dir / "root", str(Path(source).resolve()), args.workers))
    finally:
        shutil.rmtree(args.dir / "root", ignore_errors=True)
    for name, runs in samples_of.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{name:10} wall median {statistics.median(walls):.3f} s   CPU median {statistics.median(cpus):.3f} s"
            f"   CPU min {min(cpus):.3f} s   ({len(runs)} runs, workers {args.workers})"
        )


if __name__ == "__main__":
    main()
