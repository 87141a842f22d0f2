#!/usr/bin/env python3
"""Backlog benchmark: `json-workflow run --once` on N realistic job files against a raw-copy floor.

Every round, interleaved, on the same disk:

  floor  two GNU `cp -r` of the template hot folder (archive and destination side by side), then
         `rm -rf` of both; timed together. No parsing, no fsync: the speed of the disk's page cache.
  ours   the template copied into a fresh root (not timed, then `sync`), then
         `json-workflow run --once --root ROOT` timed as a subprocess (wall time, start-up included,
         peak RSS from wait4(2) in a small launcher); then every outcome is verified, the root removed.

Before each timed phase: `sync`, then --settle seconds (61 on a disk): see settle().

One warm-up round is not counted. Files/s is N / seconds for both; the ratio is ours / floor in the
same round, so a busy machine slows both sides alike. See docs/performance.md for the figures.

    python bench/backlog.py --files 10000 --rounds 5 --dir /work/bench-tmp     # the work disk
    python bench/backlog.py --files 10000 --rounds 5 --dir /dev/shm/jwbench    # tmpfs
    python bench/backlog.py --files 100000 --memory-only --dir /dev/shm/jwbench
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from json_workflow import config as config_module
from json_workflow import samples
from json_workflow.durable import TEMP_SUFFIX
from json_workflow.errors import Rejected
from json_workflow.parse import parse_job

MANIFEST = "manifest.json"
ORIGINAL = re.compile(r"^\d{8}_\d{6}(?:-\d+)?_")  # a failed file's timestamp prefix


def command() -> list[str]:
    """The installed console script beside this interpreter (no pyenv shim), else `python -m`."""
    script = Path(sys.executable).with_name("json-workflow")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "json_workflow"]


# --- the template backlog ---------------------------------------------------------------------


def generate(hot: Path, count: int, seed: int, bad_every: int) -> list[list[str]]:
    """Write the backlog into `hot`/{CLIENT}/name.json; returns the invalid files as [client, name]."""
    invalid = []
    made = set()
    for client, name, data, valid in samples.backlog(count, seed, bad_every):
        folder = hot / client
        if client not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(client)
        (folder / name).write_bytes(data)
        if not valid:
            invalid.append([client, name])
    return invalid


def template(base: Path, count: int, seed: int, bad_every: int) -> tuple[Path, list[list[str]]]:
    """The template tree <base>/template/JSON, generated once (reused when a kept one matches)."""
    top = base / "template"
    manifest = top / MANIFEST
    wanted = {"files": count, "seed": seed, "bad_every": bad_every}
    if manifest.is_file():
        known = json.loads(manifest.read_text())
        if {k: known.get(k) for k in wanted} == wanted:
            print(f"template: reusing {top / 'JSON'} ({count} files)", flush=True)
            return top / "JSON", known["invalid"]
        shutil.rmtree(top)
    started = time.perf_counter()
    invalid = generate(top / "JSON", count, seed, bad_every)
    manifest.write_text(json.dumps({**wanted, "invalid": invalid}))
    print(
        f"template: {count} files ({len(invalid)} invalid) generated in "
        f"{time.perf_counter() - started:.1f}s into {top / 'JSON'}",
        flush=True,
    )
    return top / "JSON", invalid


class Expected:
    """What a run of the template must leave behind, computed with route.plan on the built-in rules."""

    def __init__(self, hot: Path, invalid: list[list[str]], config_path: str | None, root: Path):
        config = config_module.load(config_path, root)
        self.config = config
        self.invalid = Counter(client for client, _ in invalid)  # per client folder
        bad = {(client, name) for client, name in invalid}
        self.places: Counter[str] = Counter()  # folder relative to root -> files
        self.valid = 0
        self.files: dict[str, str] = {}  # name -> client (names are unique)
        router = config.router()
        for client_dir in sorted(hot.iterdir()):
            for f in sorted(client_dir.iterdir()):
                self.files[f.name] = client_dir.name
                data = f.read_bytes()
                try:
                    job = parse_job(data, client_dir.name)
                except Rejected:
                    if (client_dir.name, f.name) not in bad:
                        raise SystemExit(f"template file {f} is rejected but samples called it valid") from None
                    continue
                if (client_dir.name, f.name) in bad:
                    raise SystemExit(f"template file {f} parses but samples called it invalid")
                self.valid += 1
                for dest in router.plan(job):
                    self.places[os.path.relpath(dest.folder, config.root)] += 1
        self.total = len(self.files)


# --- timing ---------------------------------------------------------------------------------

SETTLE = 0.0  # seconds to wait after `sync` before each timed phase; see --settle


def sync() -> None:
    subprocess.run(["sync"], check=True)


def settle() -> None:
    """Flush, then wait until the previous phase's deletions no longer bill the next phase.

    ext4 does not reuse an inode freed less than 60 s ago (300 s while its inode table block is
    dirty); without a journal, as on this work disk, every file creation scans past all of them.
    Whichever phase follows a mass deletion would otherwise pay for it (several times over).
    """
    sync()
    if SETTLE:
        time.sleep(SETTLE)


FRESH_FS = ""  # a size such as "4G": each phase runs on a new ext4 filesystem of it; see --fresh-fs


@contextlib.contextmanager
def phase_folder(base: Path) -> Iterator[Path]:
    """Where a timed phase works: `base`, or a brand-new ext4 filesystem (loop-mounted image) under it.

    A new filesystem has no recently deleted inodes and no dirty metadata left by the phase before,
    so the floor and ours both meet the disk as a production server's disk usually is.
    """
    if not FRESH_FS:
        yield base
        return
    image, mount = base / "phase.img", base / "phase"
    image.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", FRESH_FS, str(image)], check=True)
    # Inode tables and journal are written now, not by a background thread during the timed phase.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)], check=True)
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        image.unlink()


def floor_round(source: Path, base: Path) -> dict[str, float]:
    """Two `cp -r` side by side then `rm -rf` of both; seconds of the copies and of the removal."""
    with phase_folder(base) as where:
        return _floor_round(source, where)


def _floor_round(source: Path, base: Path) -> dict[str, float]:
    floor = base / "floor"
    shutil.rmtree(floor, ignore_errors=True)
    floor.mkdir(parents=True)
    settle()
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(floor / "archive")], check=True)
    subprocess.run(["cp", "-r", str(source), str(floor / "dest")], check=True)
    copied = time.perf_counter()
    subprocess.run(["rm", "-rf", str(floor / "archive"), str(floor / "dest")], check=True)
    ended = time.perf_counter()
    shutil.rmtree(floor, ignore_errors=True)
    return {"seconds": ended - started, "cp": copied - started, "rm": ended - copied}


def our_round(source: Path, base: Path, config_path: str | None, expected: Expected, check_bytes: bool) -> dict:
    """Copy the template into a fresh root (untimed), sync, then time one `run --once` on it."""
    with phase_folder(base) as where:
        return _our_round(source, base, where, config_path, expected, check_bytes)


def _our_round(
    source: Path, base: Path, where: Path, config_path: str | None, expected: Expected, check_bytes: bool
) -> dict:
    root = where / "run"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(source), str(root / "JSON")], check=True)
    settle()
    result = run_once(root, base, config_path)
    result["problems"] = verify(root, expected, result["stdout"])
    if check_bytes:
        result["problems"] += verify_bytes(root, source, expected)
    shutil.rmtree(root, ignore_errors=True)
    return result


# The child is started by this small launcher, not by the benchmark itself: a child's ru_maxrss
# includes the memory of the process it was forked (or vforked) from up to its exec, so a child
# of the benchmark (which holds the template's expectations, pydantic and more) would report the
# benchmark's own peak when it is larger. The launcher (python -S, a few MB) forks, execs the
# command, and reports wait4(2) of that child: its wall time, peak RSS and CPU times.
LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)

def rss(p):  # kB, of p and its worker processes
    try:
        with open(f"/proc/{p}/status") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        with open(f"/proc/{p}/task/{p}/children") as f:
            return own + sum(rss(int(c)) for c in f.read().split())
    except (OSError, StopIteration, ValueError):
        return 0

total = 0
while True:  # every 20 ms: the peak of all processes together (wait4 gives the largest one's)
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    total = max(total, rss(pid))
    time.sleep(0.02)
seconds = time.perf_counter() - started
with open(report, "w") as f:
    f.write(
        f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime} {total}"
    )
"""


def run_once(root: Path, base: Path, config_path: str | None) -> dict:
    """Time `json-workflow run --once --root ROOT`; peak RSS of that process only, from wait4(2)."""
    argv = [*command(), "run", "--once", "--root", str(root)]
    if config_path:
        argv += ["--config", config_path]
    report = base / "run.rusage"
    with open(base / "run.stdout", "w+b") as out, open(base / "run.stderr", "w+b") as err:
        launcher = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(report), *argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        launcher.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code, seconds, maxrss, user, system, total = report.read_text().split()
    report.unlink()
    if launcher.returncode != 0 or code != "0":
        raise SystemExit(f"json-workflow exited {code}:\n{stdout}\n{stderr[-4000:]}")
    return {
        "seconds": float(seconds),
        "rss_mb": int(maxrss) / 1024,  # Linux: kilobytes; the largest process's
        "total_rss_mb": int(total) / 1024,  # all processes together, sampled every 20 ms
        "user": float(user),
        "system": float(system),
        "stdout": stdout.strip(),
        "errors": sum(" - ERROR - " in line for line in stderr.splitlines()),
    }


# --- verification -----------------------------------------------------------------------------


def verify(root: Path, expected: Expected, summary: str) -> list[str]:
    """Every outcome of the run: nothing left, nothing lost, every copy where the rules say."""
    config = expected.config
    problems: list[str] = []
    left = [p for p in config.hot.rglob("*") if p.is_file() and p.name.lower().endswith(".json")]
    if left:
        problems.append(f"{len(left)} job files left in the hot folder, e.g. {left[0]}")
    temps = [p for p in root.rglob(f"*{TEMP_SUFFIX}")]
    if temps:
        problems.append(f"{len(temps)} temporaries left, e.g. {temps[0]}")

    # Every destination folder holds exactly the files plan() sends there, with the template's bytes.
    found: Counter[str] = Counter()
    skip = {config.hot, config.failed, config.logs, config.state}
    for folder, _, names in os.walk(root):
        if any(Path(folder).is_relative_to(s) for s in skip):
            continue
        jobs = [n for n in names if n.endswith(".json") and not n.startswith(".")]
        if jobs:
            found[os.path.relpath(folder, root)] += len(jobs)
    if found != expected.places:
        for place in sorted(set(found) | set(expected.places)):
            if found[place] != expected.places[place]:
                problems.append(f"{place}: {found[place]} files, expected {expected.places[place]}")
    archived = sum(n for place, n in found.items() if Path(root, place).is_relative_to(config.archive))
    if archived != expected.valid:
        problems.append(f"archive holds {archived} files, expected the {expected.valid} valid ones")

    failed: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    if config.failed.is_dir():
        for client_dir in config.failed.iterdir():
            for f in client_dir.iterdir():
                if f.name.endswith(".reason.txt"):
                    reasons[client_dir.name] += 1
                else:
                    failed[client_dir.name] += 1
    if failed != expected.invalid:
        problems.append(f"failed folder holds {dict(failed)}, expected {dict(expected.invalid)}")
    if reasons != expected.invalid:
        problems.append(f"failed folder has reason files {dict(reasons)}, expected {dict(expected.invalid)}")

    wanted = (
        f"Processed {expected.total} files",
        f"{expected.valid} archived",
        f"{sum(expected.invalid.values())} failed, 0 pending",
    )
    if not all(w in summary for w in wanted):
        problems.append(f"summary line {summary!r} does not say {wanted}")
    return problems


def verify_bytes(root: Path, source: Path, expected: Expected) -> list[str]:
    """Every delivered copy and every failed file has its original's exact bytes."""
    problems = []
    config = expected.config
    for folder, _, names in os.walk(root):
        if Path(folder).is_relative_to(config.hot) or Path(folder).is_relative_to(config.logs):
            continue
        for name in names:
            original = ORIGINAL.sub("", name) if Path(folder).is_relative_to(config.failed) else name
            if name.endswith(".reason.txt") or original not in expected.files:
                continue
            if Path(folder, name).read_bytes() != (source / expected.files[original] / original).read_bytes():
                problems.append(f"{folder}/{name} differs from its original")
    return problems


# --- main -------------------------------------------------------------------------------------


def config_file(base: Path, workers: int | None, flush: str | None, processes: int | None = None) -> str | None:
    if workers is None and flush is None and processes is None:
        return None
    lines = []
    if workers is not None:
        lines.append(f"workers = {workers}")
    if processes is not None:
        lines.append(f"processes = {processes}")
    if flush is not None:
        lines.append(f'flush = "{flush}"')
    path = base / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def rate(files: int, seconds: float) -> float:
    return files / seconds if seconds > 0 else float("inf")


def memory_only(args, base: Path, config_path: str | None) -> None:
    """Generate N files straight into a root, run once, verify, and report peak RSS only."""
    root = base / "run"
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    invalid = generate(root / "JSON", args.files, args.seed, args.bad_every)
    print(f"generated {args.files} files ({len(invalid)} invalid) in {time.perf_counter() - started:.1f}s", flush=True)
    expected = Expected(root / "JSON", invalid, config_path, root)
    settle()
    result = run_once(root, base, config_path)
    problems = verify(root, expected, result["stdout"])
    print(
        f"{args.files} files: peak RSS {result['rss_mb']:.1f} MB per process, {result['total_rss_mb']:.1f} MB in all "
        f"(sampled), {result['seconds']:.2f}s "
        f"({rate(args.files, result['seconds']):.0f} files/s), user {result['user']:.2f}s "
        f"system {result['system']:.2f}s"
    )
    print(f"  {result['stdout']}")
    report_problems(problems)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def report_problems(problems: list[str]) -> None:
    if problems:
        print("VERIFY FAILED:\n  " + "\n  ".join(problems[:20]))
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000, help="backlog size (default 10000)")
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds after one warm-up (default 5)")
    parser.add_argument(
        "--dir",
        default=os.path.join(os.getcwd(), "bench-tmp"),
        help="scratch folder; its disk is the one measured (default ./bench-tmp; tmpfs: /dev/shm/jwbench)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (the template is reused)")
    parser.add_argument("--workers", type=int, help="pass a configuration file setting `workers`")
    parser.add_argument("--processes", type=int, help="pass a configuration file setting `processes`")
    parser.add_argument("--flush", choices=["filesystem", "file"], help="pass a configuration file setting `flush`")
    parser.add_argument("--memory-only", action="store_true", help="one run on N files, peak RSS only")
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds to wait after `sync` before each timed phase, so one phase's deletions "
        "do not bill the next (default 61 on a disk, 0 on tmpfs)",
    )
    parser.add_argument(
        "--fresh-fs",
        metavar="SIZE",
        default="",
        help="run every timed phase on a new ext4 filesystem of SIZE (e.g. 4G) loop-mounted "
        "under --dir (needs root); no settle needed",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bad-every", type=int, default=97, help="every n-th file is invalid (default 97)")
    args = parser.parse_args()

    base = Path(os.path.abspath(args.dir))
    created = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    global SETTLE, FRESH_FS
    FRESH_FS = args.fresh_fs
    fs = f"a new {FRESH_FS} ext4 per phase, image on {fs_type(base)}" if FRESH_FS else fs_type(base)
    fresh = FRESH_FS or fs.split()[0] in ("tmpfs", "ramfs")
    SETTLE = args.settle if args.settle is not None else (0.0 if fresh else 61.0)
    try:
        config_path = config_file(base, args.workers, args.flush, args.processes)
        print(
            f"json-workflow backlog benchmark: {args.files} files in {base} "
            f"({fs}), settle {SETTLE:g}s, command {' '.join(command())}, "
            f"config {'built-in' if not config_path else Path(config_path).read_text().strip().replace(chr(10), ', ')}",
            flush=True,
        )
        if args.memory_only:
            return memory_only(args, base, config_path)
        run(args, base, config_path)
    finally:
        if not args.keep:
            for name in ("floor", "run", "template", "bench.toml", "run.stdout", "run.stderr", "run.rusage"):
                path = base / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
            if created:
                shutil.rmtree(base, ignore_errors=True)


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype,source", str(path)], capture_output=True, text=True).stdout
        return " on ".join(out.splitlines()[1].split())
    except (OSError, IndexError):
        return "unknown filesystem"


def run(args, base: Path, config_path: str | None) -> None:
    source, invalid = template(base, args.files, args.seed, args.bad_every)
    expected = Expected(source, invalid, config_path, (base / "phase" if FRESH_FS else base) / "run")
    copies = sum(expected.places.values())
    print(
        f"expected: {expected.valid} valid -> {copies} copies in {len(expected.places)} folders, "
        f"{sum(expected.invalid.values())} invalid -> JSON_FAILED",
        flush=True,
    )
    print(f"before each timed phase: sync, then {SETTLE:g}s settle (untimed)")
    print("floor = wall time of `cp -r JSON archive` + `cp -r JSON dest` + `rm -rf archive dest` (no fsync)")
    print("ours  = wall time of `json-workflow run --once` (process start-up included; every copy durable)")
    print(
        f"{'round':>7} {'floor f/s':>10} {'(cp+rm s)':>14} {'ours f/s':>9} {'ours s':>7} {'ratio':>6} "
        f"{'RSS MB':>7} {'all MB':>7} {'user s':>7} {'sys s':>6}",
        flush=True,
    )
    floors, ours, ratios, rss = [], [], [], []
    for n in range(args.rounds + 1):
        f = floor_round(source, base)
        # Bytes are compared in the warm-up round; every round checks counts, places and leftovers.
        o = our_round(source, base, config_path, expected, check_bytes=n == 0)
        report_problems(o["problems"])
        fr, orate = rate(args.files, f["seconds"]), rate(args.files, o["seconds"])
        label = "warm-up" if n == 0 else str(n)
        print(
            f"{label:>7} {fr:10.0f} {f['cp']:6.2f}+{f['rm']:<6.2f} {orate:9.0f} {o['seconds']:7.2f} "
            f"{orate / fr:6.3f} {o['rss_mb']:7.1f} {o['total_rss_mb']:7.1f} {o['user']:7.2f} {o['system']:6.2f}",
            flush=True,
        )
        if n:
            floors.append(fr)
            ours.append(orate)
            ratios.append(orate / fr)
            rss.append(o["rss_mb"])
    print(f"last summary: {o['stdout']}")
    print(
        f"verified every round: hot folder empty, {expected.valid} archived and routed to "
        f"{len(expected.places)} folders as planned, {sum(expected.invalid.values())} failed with reasons, "
        f"no {TEMP_SUFFIX} left"
    )
    print(
        f"MEDIAN of {args.rounds} rounds: floor {statistics.median(floors):.0f} files/s, "
        f"ours {statistics.median(ours):.0f} files/s, ratio {statistics.median(ratios):.3f}, "
        f"peak RSS {statistics.median(rss):.1f} MB (max {max(rss):.1f})"
    )


if __name__ == "__main__":
    main()
