#!/usr/bin/env python3
"""Fleet benchmarks: the PostgreSQL store against SQLite, and two instances on one root against one.

    python bench/fleet.py once      --dir /work/bench-tmp --files 5000 --rounds 5   # run --once, SQLite vs PostgreSQL
    python bench/fleet.py sustained --dir /work/bench-tmp --files 5000 --rounds 5   # the service, SQLite vs PostgreSQL
    python bench/fleet.py instances --dir /work/bench-tmp --files 5000 --rounds 5   # PostgreSQL: two services vs one

Each round also times the raw-copy floor (backlog.py's two `cp -r`), and the stores (or the fleet sizes)
alternate ABBA round by round. PostgreSQL is a cluster of Debian's binaries started for the run in
--dir (fsync on, as SQLite's flushes are), reached on a Unix socket; every round gets a new database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import backlog  # noqa: E402
from backlog import command, floor_round, generate, rate, settle  # noqa: E402
from pg_server import PgServer  # noqa: E402
from service import LogCounter, archived, fresh_root, stop  # noqa: E402

DONE = b"] Successfully processed "


def config(root: Path, store: str, instance: str = "bench", extra: str = "") -> Path:
    path = root / f"{instance}.toml"
    fleet = f'[store]\nurl = "{store}"\n' if store else ""
    path.write_text(f'root = "{root}"\ninstance = "{instance}"\n{extra}\n[http]\nenabled = false\n{fleet}')
    return path


def log_of(root: Path, instance: str, store: str) -> Path:
    folder = root / "JSON_PARSER_LOGS"
    return (folder / instance if store else folder) / "json_workflow.log"


def once_round(template: Path, base: Path, store: str) -> float:
    """Seconds of one `run --once` on a fresh copy of the template."""
    root = base / "once"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(template), str(root / "JSON")], check=True)
    settle()
    began = time.perf_counter()
    done = subprocess.run([*command(), "run", "--once", "--config", str(config(root, store))], capture_output=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode(errors="replace")[-3000:])
    shutil.rmtree(root, ignore_errors=True)
    return seconds


def drain_round(template: Path, base: Path, store: str, instances: int, files: int) -> float:
    """Seconds for `instances` services on one root to process every file of the template, dropped at once."""
    root = fresh_root(base, "drain")
    subprocess.run(["cp", "-r", str(template), str(root / "staging" / "JSON")], check=True)
    for client in os.listdir(root / "staging" / "JSON"):
        (root / "JSON" / client).mkdir()
    names = [f"i{n}" for n in range(instances)]
    settle()
    processes = []
    for name in names:
        log = open(root / f"{name}.stderr", "wb")
        argv = [*command(), "run", "--config", str(config(root, store, name))]
        processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log))
    for name in names:
        while b"Watching" not in (root / f"{name}.stderr").read_bytes():
            time.sleep(0.01)
    began = time.perf_counter()
    for client in os.listdir(root / "staging" / "JSON"):
        for name in os.listdir(root / "staging" / "JSON" / client):
            os.rename(root / "staging" / "JSON" / client / name, root / "JSON" / client / name)
    expected = files - files // 97
    counters = [LogCounter(log_of(root, name, store), DONE) for name in names]
    while sum(c.count() for c in counters) < expected:
        time.sleep(0.01)
    seconds = time.perf_counter() - began
    for process in processes:
        stop(process)
    if archived(root) != expected:
        raise SystemExit(f"{archived(root)} files archived, {expected} expected")
    shutil.rmtree(root, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["once", "sustained", "instances"])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds after `sync` before each timed phase")
    args = parser.parse_args()
    backlog.SETTLE = args.settle
    base = args.dir
    base.mkdir(parents=True, exist_ok=True)
    template = base / f"template-fleet-{args.files}" / "JSON"
    if not template.is_dir():
        generate(template, args.files, seed=1, bad_every=97)
    server = PgServer(fsync=True, where=base)
    try:
        sides = ["sqlite", "postgresql"] if args.mode != "instances" else ["one", "two"]
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        floors = []
        print(f"{args.mode}: {args.files} files in {base}, {args.rounds} rounds after a warm-up, ABBA", flush=True)
        for round_number in range(args.rounds + 1):
            floor = floor_round(template, base)["seconds"]
            line = [f"floor {rate(args.files, floor):.0f} files/s"]
            for side in sides if round_number % 2 == 0 else sides[::-1]:
                store = "" if side == "sqlite" else server.database()
                if args.mode == "once":
                    took = once_round(template, base, store)
                else:
                    took = drain_round(template, base, store, 2 if side == "two" else 1, args.files)
                line.append(f"{side} {rate(args.files, took):.0f} files/s (ratio to floor {floor / took:.3f})")
                if round_number:
                    seconds[side].append(took)
            if round_number:
                floors.append(floor)
            print(("warm-up" if not round_number else f"round {round_number}") + ": " + ", ".join(line), flush=True)
        medians = {side: statistics.median(rate(args.files, s) for s in seconds[side]) for side in sides}
        ratios = [a / b for a, b in zip(seconds[sides[0]], seconds[sides[1]], strict=True)]
        print(
            f"medians: floor {statistics.median(rate(args.files, f) for f in floors):.0f} files/s, "
            + ", ".join(f"{side} {medians[side]:.0f} files/s" for side in sides)
            + f"; {sides[1]} / {sides[0]} per round, median {statistics.median(ratios):.2f}"
            + f" (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    finally:
        server.close()


if __name__ == "__main__":
    main()
