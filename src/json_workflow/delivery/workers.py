"""The worker threads: as many at a time as keep the process busy, never more than `workers`.

Threads pay off where file operations wait (a network share answers in milliseconds). Where nothing
waits (a local disk's page cache, tmpfs), extra threads only hand the GIL and directory locks back
and forth: on the 2-core machine of docs/performance.md, 10 threads took a 10,000-file backlog 30 %
longer than one. So each phase measures how busy the process was while it ran and sizes its next
run to match: more threads while the process waits, fewer once it is saturated. A process that
waits for a CPU (taken by other programs) is not waiting for its files: it gets no more threads
while the kernel reports CPU pressure.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# A phase is resized once it has handled this many items since the last resize (the service's
# batches hold as few as one file each; one file says too little about a phase).
MIN_ITEMS = 32
# The CPU share (in cores) a phase should keep the process at: below it threads are added.
TARGET_BUSY = 0.7


# Linux pressure stall information: the share of time runnable tasks waited for a CPU.
CPU_PRESSURE = "/proc/pressure/cpu"
CONTENDED_PERCENT = 10.0


def next_count(count: int, busy: float, limit: int, contended: bool = False) -> int:
    """Threads for a phase's next run, from the `count` it used and the cores the process kept `busy`."""
    wanted = round(count * TARGET_BUSY / max(busy, 0.01))
    if contended:
        wanted = min(wanted, count)
    return max(1, min(limit, wanted))


def cpu_contended(path: str = CPU_PRESSURE) -> bool:
    """True when tasks waited for a CPU over 10 % of the last 10 s; False when the kernel does not say."""
    try:
        with open(path) as pressure:
            some = pressure.readline().split()  # some avg10=0.14 avg60=3.16 avg300=2.09 total=770595644
        return float(some[1].removeprefix("avg10=")) > CONTENDED_PERCENT
    except (OSError, ValueError, IndexError):
        return False


def _as_first_worker(work: Callable, items: list, first: str) -> list:
    """work(item) for every item in the calling thread, which the log names `first` (worker-1) meanwhile.

    Handing a small batch to a pool thread and back cost the service more than the batch's work.
    """
    thread = threading.current_thread()
    name, thread.name = thread.name, first
    try:
        return [work(item) for item in items]
    finally:
        thread.name = name


class Workers:
    """A pool of `limit` named threads; `map` runs one phase of a batch on as many as pay off."""

    def __init__(self, limit: int, pressure: str = CPU_PRESSURE, first: int = 1):
        """`first`: the number of the first thread's name (a worker process's follow those of the one before)."""
        self.limit = limit
        self.pressure = pressure
        self.first = f"worker-{first}"
        numbers = itertools.count(first)
        self.pool = ThreadPoolExecutor(
            limit, initializer=lambda: setattr(threading.current_thread(), "name", f"worker-{next(numbers)}")
        )
        self._threads: dict[str, int] = {}
        self._measured: dict[str, tuple[int, float, float]] = {}  # phase -> items, wall, CPU since resized

    def threads(self, phase: str) -> int:
        """How many threads the phase's next run will use."""
        return self._threads.get(phase, 1)

    def map(self, phase: str, work: Callable, items: list) -> list:
        """work(item) for every item, in order; each thread takes a share of the items as one task."""
        # One task per thread, not per item: handing each item over on its own cost more than the work.
        count = max(1, min(self.threads(phase), len(items)))
        slices = [items[i::count] for i in range(count)]
        wall, cpu = time.perf_counter(), time.process_time()
        if count == 1:
            done = [_as_first_worker(work, items, self.first)]
        else:
            done = list(self.pool.map(lambda part: [work(item) for item in part], slices))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self._measure(phase, count, len(items), wall, cpu)
        results = [None] * len(items)
        for i, part in enumerate(done):
            results[i::count] = part
        return results

    def _measure(self, phase: str, count: int, items: int, wall: float, cpu: float) -> None:
        before = self._measured.get(phase, (0, 0.0, 0.0))
        items, wall, cpu = before[0] + items, before[1] + wall, before[2] + cpu
        if items < MIN_ITEMS or wall <= 0:
            self._measured[phase] = (items, wall, cpu)
            return
        self._measured.pop(phase, None)
        self._threads[phase] = next_count(count, cpu / wall, self.limit, cpu_contended(self.pressure))

    def close(self) -> None:
        self.pool.shutdown()
