#!/usr/bin/env python3
"""Replay speed: `json-workflow replay` over an archive of N files, against `cat` of the same files.

    python bench/replay.py --files 10000  --dir /dev/shm/jwreplay --rounds 5   # tmpfs
    python bench/replay.py --files 100000 --dir /work/bench-tmp --rounds 3     # the work disk

The archive is the backlog template (realistic job files, 2-8 KB) laid out as JSON_STORE/CLIENT/;
NEW adds a templated rule and drops one, so about half the files would change. Each round reads the
archive once with `cat` (the floor: the same bytes through one process, page cache as it is), then
replays it; peak RSS comes from the replay's own rusage.
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

sys.path.insert(0, str(Path(__file__).parent))
from backlog import command, generate  # noqa: E402

NEW = """root = "{root}"
[[routes]]
name = "Monday Rank"
destination = "SYNC/MAKE/Monday Rank"
when = {{ ClientCode = "RANK", JobCategory = {{ not = "CELTRA" }} }}
[[routes]]
name = "Client stores"
destination = "CLIENT-STORES/{{ClientCode}}/IN"
when = {{ ClientCode = {{ regex = "[A-M].*" }} }}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dir", default="/dev/shm/jwreplay")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(args.dir) / f"replay-{args.files}"
    archive = root / "JSON_STORE"
    if not archive.is_dir():
        began = time.perf_counter()
        (root / "JSON").mkdir(parents=True, exist_ok=True)
        generate(archive, args.files, seed=3, bad_every=0)
        print(f"archive: {args.files} files written in {time.perf_counter() - began:.1f}s", flush=True)
    new = root / "new.toml"
    new.write_text(NEW.format(root=root))
    paths = sorted(str(p) for p in archive.glob("*/*.json"))
    floors, ours, rss = [], [], []
    for round_number in range(args.rounds + 1):
        began = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            for start in range(0, len(paths), 2000):  # cat reads them all, in as few processes as argv allows
                subprocess.run(["cat", *paths[start : start + 2000]], stdout=sink, check=True)
        floor = time.perf_counter() - began
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        began = time.perf_counter()
        done = subprocess.run(
            [*command(), "replay", "--config", str(new), "--format", "csv"], stdout=subprocess.DEVNULL, check=False
        )
        seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if done.returncode != 1:
            raise SystemExit(f"replay exited {done.returncode}, expected 1 (changes)")
        label = "warm-up" if round_number == 0 else f"round {round_number}"
        print(
            f"{label}: cat {args.files / floor:.0f} files/s, replay {args.files / seconds:.0f} files/s "
            f"({seconds:.2f}s), ratio {floor / seconds:.3f}",
            flush=True,
        )
        if round_number:
            floors.append(floor)
            ours.append(seconds)
            rss.append(max(peak, before) / 1024)
    print(
        f"replay medians over {args.rounds} rounds: {args.files} files in {statistics.median(ours):.2f}s, "
        f"{args.files / statistics.median(ours):.0f} files/s; cat {args.files / statistics.median(floors):.0f} "
        f"files/s; ratio {statistics.median(floors) / statistics.median(ours):.3f}; peak RSS of children "
        f"{max(rss):.1f} MB"
    )
    if not os.environ.get("KEEP"):
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
