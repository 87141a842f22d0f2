"""Where the instructions per file go: instructions.py's method under callgrind, grouped by what runs them.

Each tree (the working tree, any `--commit REV`) runs `run_once` on an empty hot folder and on N
files of the backlog template under callgrind; a function's instructions per file are (full - empty)
/ N, summed into groups by the library and source file they are in (the interpreter loop, dicts,
strings, memory, JSON, SQLite, the C library ...). The groups of two trees side by side show where
a change saved or cost.

    python bench/breakdown.py --commit 1145800 [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import RUN, runs_of, trees  # noqa: E402

# (group, a test on "object file", "source file", "function"), first match wins.
GROUPS = [
    ("JSON: orjson", lambda ob, fl, fn: "orjson" in ob),
    ("JSON: standard library", lambda ob, fl, fn: fl.endswith("_json.c") or "scanstring" in fn or "scan_once" in fn),
    ("SQLite", lambda ob, fl, fn: "sqlite" in ob or "sqlite" in fn.lower()),
    ("interpreter loop (ceval, frames, calls)", lambda ob, fl, fn: re.search(r"(ceval|frame|call)\.c$|_frame", fl)),
    ("dicts", lambda ob, fl, fn: fl.endswith("dictobject.c")),
    ("strings (unicode, bytes, format)", lambda ob, fl, fn: re.search(r"unicode|bytes|format", fl)),
    ("memory (obmalloc, malloc, free)", lambda ob, fl, fn: re.search(r"obmalloc|malloc", fl) or "malloc" in fn),
    ("garbage collector", lambda ob, fl, fn: fl.endswith("gcmodule.c")),
    ("GIL and locks", lambda ob, fl, fn: "gil" in fl or "pthread" in fn or "mutex" in fn),
    ("objects, types, attributes", lambda ob, fl, fn: re.search(r"(object|tupleobject|listobject)\.[ch]$", fl)),
    ("other CPython", lambda ob, fl, fn: "python" in ob),
    ("C library (memcpy, syscalls ...)", lambda ob, fl, fn: "libc" in ob or "ld-linux" in ob),
    ("other", lambda ob, fl, fn: True),
]
# "  1,234 ( 0.05%)  file:function [object]"; the object is left out while it stays the same
LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?):(\S+)(?:\s+\[(.*)\])?\s*$")


def callgrind(python: Path, root: Path) -> Counter[tuple[str, str, str]]:
    """Self instructions of every function of one run_once on `root`, by (object, source file, function)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", str(python), "-c", RUN, str(root)],
            capture_output=True, check=True, env={**env, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        text = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", f"{out}/cg.out"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    costs: Counter[tuple[str, str, str]] = Counter()
    ob = ""
    for line in text.splitlines():
        if (m := LINE.match(line)) and "PROGRAM TOTALS" not in line:
            ob = m.group(4) or ob
            costs[(ob, m.group(2), m.group(3))] += int(m.group(1).replace(",", ""))
    return costs


def group(ob: str, fl: str, fn: str) -> str:
    return next(name for name, test in GROUPS if test(ob, fl, fn))


def per_file(python: Path, template: Path, files: int, scratch: Path) -> Counter[str]:
    empty, full = runs_of(callgrind, python, template, scratch)
    groups: Counter[str] = Counter()
    for key, cost in full.items():
        groups[group(*key)] += (cost - empty.get(key, 0)) / files
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--commit", action="append", default=[], help="also break down this commit (repeatable)")
    parser.add_argument("--dir", default="/dev/shm/jwinstructions", help="scratch folder, shared with instructions.py")
    args = parser.parse_args()
    scratch = Path(args.dir)
    pythons, template = trees(scratch, args.files, args.commit)
    pythons = {name: pythons[name] for name in [*args.commit, "working tree"]}  # the newest last
    results = {name: per_file(python, template, args.files, scratch) for name, python in pythons.items()}
    names = list(results)
    print("| instructions per file | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    order = [name for name, _ in GROUPS]
    for g in order:
        print(f"| {g} | " + " | ".join(f"{results[n][g] / 1000:.1f} K" for n in names) + " |")
    print("| **total** | " + " | ".join(f"**{sum(results[n].values()) / 1000:.1f} K**" for n in names) + " |")


if __name__ == "__main__":
    main()
