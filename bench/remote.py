#!/usr/bin/env python3
"""URL destinations: files/s to an HTTP endpoint that answers after 20 ms, and what a dead endpoint costs
the files routed only to folders.

    python bench/remote.py throughput --files 1000 --rounds 3 --dir /work/bench-tmp
    python bench/remote.py dead --seconds 20 --dir /work/bench-tmp

throughput: `json-workflow run --once` of N job files, each sent to a loopback HTTP endpoint (a threaded
server answering 200 after --delay seconds) and copied to a folder, with the default `concurrency`. The
floor is what the endpoint can take at that concurrency: processes x concurrency / delay files/s.

dead: the service, files dropped at --rate a second for a client routed only to a folder, and one a
second for a client routed to an endpoint that accepts connections and never answers (the worst dead
endpoint: every try waits for the timeout). Prints the p50/p99/max latency (drop to archived) of the
folder-only files, against the same run with no dead endpoint configured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from json_workflow import samples
from json_workflow.routing.rules import Rule

CONCURRENCY = Rule.model_fields["concurrency"].default


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.02

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def endpoint(delay: float) -> tuple[ThreadingHTTPServer, str]:
    _Slow.delay = delay
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    server.request_queue_size = 128
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/in"


def config(root: Path, url: str, extra: str = "", hooked: str = "ACME", timeout: float = 30) -> Path:
    """Files of `hooked` go to `url` and to OUT; those of LOCAL to OUT only."""
    path = root.parent / "remote.toml"
    path.write_text(
        f'root = "{root}"\n{extra}[http]\nlisten = "127.0.0.1:0"\n'
        f'[[routes]]\nname = "Hook"\nwhen = {{ ClientCode = "{hooked}" }}\ndestination = "{url}"\n'
        f"timeout = {timeout:g}\n"
        f'[[routes]]\nname = "Local"\nwhen = {{ ClientCode = ["ACME", "LOCAL"] }}\ndestination = "OUT"\n'
    )
    return path


def fresh(base: Path) -> Path:
    root = base / "remote-root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "JSON").mkdir(parents=True)
    return root


def throughput(args, base: Path) -> None:
    server, url = endpoint(args.delay)
    processes = args.processes or min(8, len(os.sched_getaffinity(0)))  # "auto", for a backlog of 200 or more
    floor = processes * CONCURRENCY / args.delay
    rates = []
    print(
        f"throughput: {args.files} files, endpoint answers after {args.delay * 1000:g} ms, {processes} "
        f"process(es), concurrency {CONCURRENCY} each (floor {floor:.0f} files/s), {args.dir}",
        flush=True,
    )
    for round_number in range(args.rounds + 1):
        root = fresh(base)
        (root / "JSON" / "ACME").mkdir()
        for i in range(args.files):
            (root / "JSON" / "ACME" / f"job-{i:06}.json").write_bytes(samples.job("ACME", "PRODUCTION", i, 2000))
        path = config(root, url, f"processes = {args.processes}\n" if args.processes else "")
        began = time.perf_counter()
        once = [sys.executable, "-m", "json_workflow", "run", "--once", "--quiet", "--config", str(path)]
        done = subprocess.run(once, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0 or len(os.listdir(root / "OUT")) != args.files:
            raise SystemExit(f"run --once failed: {done.stderr[-2000:]}")
        label = "warm-up" if round_number == 0 else f"round {round_number}"
        print(f"{label}: {args.files / seconds:.0f} files/s ({seconds:.2f} s, start-up included), "
              f"{args.files / seconds / floor:.2f} of the floor", flush=True)  # fmt: skip
        if round_number:
            rates.append(args.files / seconds)
    print(f"median {statistics.median(rates):.0f} files/s, {statistics.median(rates) / floor:.2f} of the floor")
    server.shutdown()


def dead(args, base: Path) -> None:
    hung = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(1024)
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/in"
    for label, with_dead in (("no dead endpoint", False), ("a hung endpoint", True)):
        root = fresh(base)
        path = config(root, url, hooked="ACME" if with_dead else "NOBODY", timeout=args.timeout)
        latencies = _latencies(root, path, args)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"{label}: {len(latencies)} folder-only files, p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms", flush=True)  # fmt: skip
    hung.close()


def _latencies(root: Path, path: Path, args) -> list[float]:
    (root / "JSON" / "LOCAL").mkdir()
    (root / "JSON" / "ACME").mkdir()
    staging = root.parent / "remote-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    log = open(root.parent / "remote-service.log", "wb")
    service = subprocess.Popen([sys.executable, "-m", "json_workflow", "run", "--config", str(path)], stderr=log)
    while b"Watching" not in (root.parent / "remote-service.log").read_bytes():
        time.sleep(0.05)
    dropped: dict[str, float] = {}  # name -> when it was renamed in (wall clock, as ctime is)
    began, n = time.monotonic(), 0
    while time.monotonic() - began < args.seconds:
        name = f"l-{n:06}.json"
        (staging / name).write_bytes(samples.job("LOCAL", "PRODUCTION", n, 2000))
        dropped[name] = time.time()
        os.rename(staging / name, root / "JSON" / "LOCAL" / name)
        if n % args.rate == 0:  # one a second for the dead endpoint's client
            (staging / f"a-{n}.json").write_bytes(samples.job("ACME", "PRODUCTION", n, 2000))
            os.rename(staging / f"a-{n}.json", root / "JSON" / "ACME" / f"a-{n}.json")
        n += 1
        time.sleep(max(0.0, began + n / args.rate - time.monotonic()))
    archive = root / "JSON_STORE" / "LOCAL"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(os.listdir(archive) if archive.is_dir() else []) < len(dropped):
        time.sleep(0.1)
    service.terminate()
    service.wait()
    # The archived file's ctime is its rename into the archive, the last step of its publication.
    return [os.stat(archive / name).st_ctime - at for name, at in dropped.items() if (archive / name).exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["throughput", "dead"])
    parser.add_argument("--dir", default="/work/bench-tmp")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    {"throughput": throughput, "dead": dead}[args.what](args, base)


if __name__ == "__main__":
    main()
