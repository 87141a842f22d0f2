#!/usr/bin/env python3
"""How fast the dashboard answers with a large statistics store: GET /, /metrics, /failed, /files?q=.

    python bench/web.py --files 100000 --dir /work/bench-tmp --requests 50

A store of FILES files received today (1 % failed, most routed by a rule) is written through the
Store interface, as the pipeline writes it; then `json-workflow run` starts on that root (an empty
hot folder) and each page is requested REQUESTS times, one after the other, over loopback.
"""

from __future__ import annotations

import argparse
import datetime
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from json_workflow.store import SqliteStore
from json_workflow.store.rows import Batch, FinishedFile, Received

PAGES = ["", "metrics", "live", "failed", "files?q=5912345", "healthz", "readyz"]
RULES = [("Monday Rank", "SYNC/MAKE/Monday Rank"), ("LOREAL/IN", "CLIENT-STORES/LOREAL/IN")]
CLIENTS = ["RANK", "LOREAL", "BISSELL", "CIBC", "OLIVER", "ADIDAS", "PAYPAL", "BAYER", "3M", "ACME"]


def fill(root: Path, files: int) -> None:
    """`files` rows received and finished today, in batches of 1,000 as the pipeline records them."""
    state = root / "JSON_PARSER_STATE"
    state.mkdir(parents=True)
    store = SqliteStore(state)
    rng = random.Random(1)
    midnight = datetime.datetime.combine(datetime.date.today(), datetime.time(), datetime.UTC).timestamp()
    now = time.time()
    for start in range(0, files, 1000):
        received, finished = [], []
        for n in range(start, min(files, start + 1000)):
            client = rng.choice(CLIENTS)
            at = midnight + (now - midnight) * n / files
            received.append(Received(f"/claim/{n}", f"{client}/{5_900_000 + n}.json", client, "REALTIME", at, n))
        rows = store.record_plan([], received)
        for row, r in zip(rows, received, strict=True):
            failed = rng.random() < 0.01
            routed = [] if failed else [(rule, str(root / folder)) for rule, folder in RULES[: rng.randint(0, 2)]]
            finished.append(
                FinishedFile(
                    row,
                    "failed" if failed else "archived",
                    0.004,
                    r.client,
                    "PRODUCTION",
                    stage="parse" if failed else None,
                    reason="invalid JSON" if failed else None,
                    routed=routed,
                    job=str(5_900_000 + row),
                    failed_as=str(root / f"JSON_FAILED/{r.client}/20261201_000000_{row}.json") if failed else None,
                )
            )
        store.finish_batch([], finished, Batch(received[-1].at, len(received), 0.1))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dir", default="/work/bench-tmp")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    root = Path(args.dir) / "web"
    shutil.rmtree(root, ignore_errors=True)
    (root / "JSON").mkdir(parents=True)
    began = time.perf_counter()
    fill(root, args.files)
    print(f"store: {args.files} files today, written in {time.perf_counter() - began:.1f}s", flush=True)
    config = root / "bench.toml"
    config.write_text(f'root = "{root}"\n[http]\nlisten = "127.0.0.1:0"\n')
    log = root / "service.stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"checks at (http://\S+/)", log.read_text())):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the service did not start; see " + str(log))
            time.sleep(0.05)
        url = found.group(1)
        for page in PAGES:
            get(url + page)  # the first request pays for templates and today's first figures
        for page in PAGES:
            times = sorted(get(url + page) for _ in range(args.requests))
            q = statistics.quantiles(times, n=20)
            print(
                f"GET /{page:<16} median {statistics.median(times) * 1000:6.1f} ms, p95 {q[18] * 1000:6.1f} ms, "
                f"max {times[-1] * 1000:6.1f} ms ({args.requests} requests)",
                flush=True,
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(root, ignore_errors=True)


def get(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
