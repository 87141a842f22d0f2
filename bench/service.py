#!/usr/bin/env python3
"""Service benchmarks: latency of single drops, sustained throughput, idle cost and backlog memory.

    python bench/service.py latency   --dir /work/bench-tmp     # 50 files/s for 20 s: drop -> archived
    python bench/service.py sustained --dir /work/bench-tmp     # 10,000 files dropped at once, vs the floor
    python bench/service.py idle      --dir /work/bench-tmp     # CPU seconds in 5 idle minutes, 50 clients
    python bench/service.py memory    --dir /dev/shm/jwbench    # peak RSS draining 100,000 files

Drops are atomic: each file is written into a staging folder on the same filesystem, then renamed
into the hot folder. The service is a real subprocess started with `json-workflow run`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import backlog  # noqa: E402
from backlog import command, floor_round, generate, rate, settle  # noqa: E402
from json_workflow import samples  # noqa: E402

# --web: the dashboard off, on with no client, or on with a Prometheus-like scraper of /metrics every
# second and the overview open in a browser (its live part fetched every 2 s).
WEB = {
    "off": "\n[http]\nenabled = false\n",
    "idle": '\n[http]\nlisten = "127.0.0.1:0"\n',
    "scraped": '\n[http]\nlisten = "127.0.0.1:0"\n',
}


class Scraper(threading.Thread):
    """GET /metrics every second and /live every 2 s, as Prometheus and an open overview would."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        log = (root / "service.stderr").read_text()
        self.url = re.search(r"checks at (http://\S+/)", log).group(1)
        self.stopping = threading.Event()
        self.requests = self.failures = 0
        self.slowest = 0.0

    def warm(self) -> Scraper:
        """One request of each before timing: a long-running service has compiled its templates long ago."""
        for path in ("metrics", "live", ""):
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                response.read()
        return self

    def run(self) -> None:
        tick = 0
        while not self.stopping.wait(1.0):
            for path in ("metrics", "live") if tick % 2 == 0 else ("metrics",):
                began = time.perf_counter()
                try:
                    with urllib.request.urlopen(self.url + path, timeout=10) as response:
                        response.read()
                except OSError:
                    self.failures += 1
                self.requests += 1
                self.slowest = max(self.slowest, time.perf_counter() - began)
            tick += 1

    def stop(self) -> str:
        self.stopping.set()
        self.join()
        return f"{self.requests} scrapes, {self.failures} failed, slowest {self.slowest * 1000:.0f} ms"


def start(root: Path, extra: str = "", web: str = "idle") -> subprocess.Popen:
    config = root / "bench.toml"
    config.write_text(f'root = "{root}"\n{extra}{WEB[web]}')
    log = open(root / "service.stderr", "wb")
    process = subprocess.Popen([*command(), "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while b"Watching" not in (root / "service.stderr").read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the service did not start; see " + str(root / "service.stderr"))
        time.sleep(0.01)
    return process


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def fresh_root(base: Path, name: str) -> Path:
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "JSON").mkdir(parents=True)
    (root / "staging").mkdir()
    return root


def archived(root: Path) -> int:
    store = root / "JSON_STORE"
    if not store.is_dir():
        return 0
    # Hidden names are the service's temporary files (".name.PID-N.jwtmp"): not published yet.
    return sum(sum(1 for name in os.listdir(folder) if not name.startswith(".")) for folder in os.scandir(store))


class LogCounter:
    """Counts a marker in a growing log file, reading only what was appended since the last count."""

    def __init__(self, path: Path, marker: bytes):
        self.path, self.marker = path, marker
        self.offset, self.total, self.tail = 0, 0, b""

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                new = f.read()
        except FileNotFoundError:
            return self.total
        self.offset += len(new)
        # A marker cut in two by a read is counted once: the tail keeps the start of an unfinished line.
        text = self.tail + new
        cut = text.rfind(b"\n") + 1
        self.total += text[:cut].count(self.marker)
        self.tail = text[cut:]
        return self.total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latency(args, base: Path) -> None:
    for web in args.web.split(","):
        for processes in args.processes.split(","):
            _latency(args, base, web, processes)


def _latency(args, base: Path, web: str, processes: str) -> None:
    root = fresh_root(base, "latency")
    for client in samples.CLIENT_MIX:  # client folders exist in production before files arrive
        (root / "JSON" / client).mkdir()
    process = start(root, _processes(processes), web=web)
    if processes not in ("1", "default"):  # worker processes start for a backlog, then stay: lone files after
        burst = list(samples.backlog(1000, seed=6, bad_every=0))
        for _, name, data, _ in burst:
            (root / "staging" / f"burst-{name}").write_bytes(data)
        for client, name, _, _ in burst:
            os.rename(root / "staging" / f"burst-{name}", root / "JSON" / client / f"burst-{name}")
        seen_burst: dict[str, float] = {}
        while len(seen_burst) < len(burst):
            _watch(root, seen_burst)
        started = log_lines(root, b"Started worker process")
        print(f"latency: a 1,000-file burst first ({started} worker processes started)", flush=True)
    scraper = Scraper(root).warm() if web == "scraped" else None
    if scraper:
        scraper.start()
    rng_files = list(samples.backlog(args.rate * args.seconds, seed=5, bad_every=0))
    dropped: dict[str, float] = {}
    seen: dict[str, float] = {}
    interval = 1 / args.rate
    started = time.perf_counter()
    for n, (client, name, data, _) in enumerate(rng_files):
        (root / "JSON" / client).mkdir(exist_ok=True)
        staged = root / "staging" / name
        staged.write_bytes(data)
        while time.perf_counter() < started + n * interval:
            _watch(root, seen)
        os.rename(staged, root / "JSON" / client / name)
        dropped[name] = time.perf_counter()
    deadline = time.perf_counter() + 30
    while not seen.keys() >= dropped.keys() and time.perf_counter() < deadline:
        _watch(root, seen)
    scraped = scraper.stop() if scraper else ""
    stop(process)
    delays = sorted(seen[n] - dropped[n] for n in dropped if n in seen)
    missing = len(dropped) - len(delays)
    q = statistics.quantiles(delays, n=100)
    print(
        f"latency (web {web}, processes {processes}): {len(delays)} files at {args.rate}/s for {args.seconds}s; "
        "drop -> archived: "
        f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
        + (f"; {missing} NOT ARCHIVED" if missing else "")
        + (f"; {scraped}" if scraped else ""),
        flush=True,
    )
    if missing:  # kept for a look: the service's log and folders
        print(f"not archived: {sorted(n for n in dropped if n not in seen)}; kept {root}", flush=True)
    else:
        shutil.rmtree(root, ignore_errors=True)


def log_lines(root: Path, marker: bytes) -> int:
    """How many lines of the service's log hold `marker`."""
    return (root / "JSON_PARSER_LOGS" / "json_workflow.log").read_bytes().count(marker)


def _watch(root: Path, seen: dict[str, float]) -> None:
    now = time.perf_counter()
    store = root / "JSON_STORE"
    if store.is_dir():
        for folder in os.scandir(store):
            for entry in os.scandir(folder.path):
                if entry.name not in seen and not entry.name.startswith("."):
                    seen[entry.name] = now


def sustained(args, base: Path) -> None:
    template = base / f"template-sustained-{args.files}" / "JSON"
    if not template.is_dir():
        generate(template, args.files, seed=1, bad_every=97)
    webs = [(web, processes) for web in args.web.split(",") for processes in args.processes.split(",")]
    ratios: dict[tuple[str, str], list[float]] = {w: [] for w in webs}
    ours: dict[tuple[str, str], list[float]] = {w: [] for w in webs}
    floors: dict[tuple[str, str], list[float]] = {w: [] for w in webs}
    print(
        f"sustained: {args.files} files in {base}, settle {backlog.SETTLE:g}s before each timed phase, "
        f"batch_size {args.batch_size or 'default (10)'}, web {args.web}, processes {args.processes} (alternating)",
        flush=True,
    )
    for round_number in range(args.rounds + 1):
        # ABBA: the order alternates round by round, since the first service of a round tends to be faster.
        for web in webs if round_number % 2 == 0 else webs[::-1]:
            _sustained_round(args, base, template, web, round_number, ratios, ours, floors)
    for web in webs:
        print(
            f"sustained medians over {args.rounds} rounds ({_variant(web)}): "
            f"floor {statistics.median(floors[web]):.0f} "
            f"files/s, service {statistics.median(ours[web]):.0f} files/s, ratio {statistics.median(ratios[web]):.3f}"
        )


def _sustained_round(args, base, template, web, round_number, ratios, ours, floors) -> None:
    floor = floor_round(template, base)
    root = fresh_root(base, "sustained")
    subprocess.run(["cp", "-r", str(template), str(root / "staging" / "JSON")], check=True)
    for client in os.listdir(root / "staging" / "JSON"):
        (root / "JSON" / client).mkdir()
    settle()
    extra = (f"batch_size = {args.batch_size}\n" if args.batch_size else "") + _processes(web[1])
    process = start(root, extra, web[0])
    scraper = Scraper(root).warm() if web[0] == "scraped" else None
    log = LogCounter(root / "JSON_PARSER_LOGS" / "json_workflow.log", b"] Successfully processed ")
    if args.warm:  # the steady state: worker processes, once a backlog started them, stay until the service stops
        _warm_up(base, root, args.warm, log)
    if scraper:
        scraper.start()
    began = time.perf_counter()
    for client in os.listdir(root / "staging" / "JSON"):
        for name in os.listdir(root / "staging" / "JSON" / client):
            os.rename(root / "staging" / "JSON" / client / name, root / "JSON" / client / name)
    expected = args.files - args.files // 97
    # Drained when the service has logged every valid file as processed (it logs a file once it
    # is published and flushed). Reading the new part of the log every 10 ms costs the service
    # next to nothing; listing the ~10,000 archived names that often took a share of a core.
    done = log.count()
    while done < args.warm + expected:
        time.sleep(0.01)
        done = log.count()
    seconds = time.perf_counter() - began
    scraped = scraper.stop() if scraper else ""
    if archived(root) != expected + args.warm:
        raise SystemExit(f"the service logged {done} files but {archived(root)} are archived")
    stop(process)
    shutil.rmtree(root, ignore_errors=True)
    label = "warm-up" if round_number == 0 else f"round {round_number}"
    ratio = rate(args.files, seconds) / rate(args.files, floor["seconds"])
    print(
        f"{label} ({_variant(web)}): floor {rate(args.files, floor['seconds']):.0f} files/s, service "
        f"{rate(args.files, seconds):.0f} files/s, ratio {ratio:.3f}" + (f"; {scraped}" if scraped else ""),
        flush=True,
    )
    if round_number:
        ratios[web].append(ratio)
        ours[web].append(rate(args.files, seconds))
        floors[web].append(rate(args.files, floor["seconds"]))


def _warm_up(base: Path, root: Path, files: int, log: LogCounter) -> None:
    """`files` valid files (named w*.json, apart from the burst's) dropped and processed before the timed burst."""
    template = base / f"template-warm-{files}"
    if not template.is_dir():
        generate(template, files, seed=2, bad_every=0)
    for client in os.listdir(template):
        (root / "JSON" / client).mkdir(exist_ok=True)
        for name in os.listdir(template / client):
            shutil.copyfile(template / client / name, root / "staging" / name)
            os.rename(root / "staging" / name, root / "JSON" / client / f"w{name}")
    while log.count() < files:
        time.sleep(0.01)
    settle()


def _variant(web: tuple[str, str]) -> str:
    return f"web {web[0]}, processes {web[1]}"


def _processes(processes: str) -> str:
    """The `processes` line of the service's configuration ("default": none, the product's default)."""
    return "" if processes == "default" else f"processes = {processes}\n"


def idle(args, base: Path) -> None:
    for web in args.web.split(","):
        _idle(args, base, web)


def _idle(args, base: Path, web: str) -> None:
    root = fresh_root(base, "idle")
    for n in range(50):
        (root / "JSON" / f"CLIENT{n:02d}").mkdir()
    process = start(root, web=web)
    scraper = Scraper(root).warm() if web == "scraped" else None
    if scraper:
        scraper.start()
    time.sleep(2)  # start-up itself is not idle cost
    before = cpu_seconds(process.pid)
    time.sleep(args.seconds)
    used = cpu_seconds(process.pid) - before
    rss = peak_rss_mb(process.pid)
    scraped = scraper.stop() if scraper else ""
    stop(process)
    print(
        f"idle (web {web}): {used:.2f} CPU seconds in {args.seconds}s with 50 client folders "
        f"(scan every 60 s); peak RSS {rss:.1f} MB" + (f"; {scraped}" if scraped else ""),
        flush=True,
    )
    shutil.rmtree(root, ignore_errors=True)


def memory(args, base: Path) -> None:
    root = fresh_root(base, "memory")
    generate(root / "JSON", args.files, seed=2, bad_every=97)
    old = time.time() - 60
    for folder in (root / "JSON").iterdir():
        for f in folder.iterdir():
            os.utime(f, (old, old))
    process = start(root, f"batch_size = {args.batch_size}\n" if args.batch_size else "")
    peak = 0.0
    expected = args.files - args.files // 97
    while archived(root) < expected:
        peak = max(peak, peak_rss_mb(process.pid))
        time.sleep(0.2)
    peak = max(peak, peak_rss_mb(process.pid))
    stop(process)
    print(
        f"memory: peak RSS {peak:.1f} MB draining a {args.files}-file backlog "
        f"(batch_size {args.batch_size or 'default (10)'})"
    )
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["latency", "sustained", "idle", "memory"])
    parser.add_argument("--dir", default="/work/bench-tmp")
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--warm",
        type=int,
        default=1000,
        help="sustained: files processed before the timed burst, so that it measures the steady state (the worker "
        "processes a backlog starts stay until the service stops); 0: a service that just started",
    )
    parser.add_argument(
        "--web",
        default="idle",
        help="the dashboard: off, idle (on, no client) or scraped (/metrics every second, the overview open); "
        "a comma list (off,scraped) runs each, in `sustained` in every round, in alternating order",
    )
    parser.add_argument(
        "--processes",
        default="default",
        help="the service's `processes` (default: the product's default); a comma list (1,2) runs each, in "
        "`sustained` in every round, in alternating order; `latency` with more than one drops a 1,000-file "
        "burst first, so that the lone files go through running worker processes",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds to wait after `sync` before each timed phase of `sustained` "
        "(default 61 on a disk, 0 on tmpfs; see backlog.py)",
    )
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    fs = backlog.fs_type(base)
    backlog.SETTLE = args.settle if args.settle is not None else (0.0 if fs.split()[0] in ("tmpfs", "ramfs") else 61.0)
    if args.seconds is None:
        args.seconds = 300 if args.what == "idle" else 20
    if args.files is None:
        args.files = 100_000 if args.what == "memory" else 10_000
    {"latency": latency, "sustained": sustained, "idle": idle, "memory": memory}[args.what](args, base)


if __name__ == "__main__":
    main()
