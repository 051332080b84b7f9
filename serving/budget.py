"""The large-image lane: expensive decodes run one at a time, in a separate low-priority process,
within a CPU budget.

    lane = CostLane(share=0.25)
    data = lane.run(decode_for_model, upload, max_pixels, target)       # or raises Busy (HTTP 503)
    data = await asyncio.wrap_future(lane.submit(decode_for_model, upload, max_pixels, target))

A search's usual cost is the model's; decoding a large PNG, WebP or TIFF (tens of megapixels)
costs a hundred times that. Left in the common pool such requests starve everyone else. The lane
gives them:

- one worker process (spawned: no TensorFlow in it), at the lowest CPU priority (nice 19), so
  the kernel runs every ordinary request first when the cores are busy, and whose decodes share
  no interpreter lock and no memory with the service; its address space is capped
  (`memory_mb`), so a decode that would exhaust memory fails there, not in the service, and a
  worker that dies is replaced, and one whose service died (even by SIGKILL) exits on its own;
- a budget: the lane may spend `share` of one core on average (a token bucket of CPU seconds,
  refilled at `share` per second, holding at most `burst` seconds). When it is spent, a large
  image is answered at once with `Busy` (HTTP 503 and a Retry-After of when the budget allows
  it) instead of waiting;
- at most `max_waiting` requests queued behind the one decoding; more are `Busy` too.

The CPU time charged is the worker's own (`time.process_time` around each call).
`process=False` runs the lane in a thread of this process instead (niced on Linux; tests).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool


class Busy(Exception):
    """The lane's budget or queue is full: retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class LaneFailed(RuntimeError):
    """The worker died during a call (e.g. killed for memory); it has been replaced."""


def _lane_setup(memory_mb: int | None = None, parent: int | None = None) -> None:
    """Worker (or lane thread) set-up: nice 19, the address-space cap, and, in a worker process
    (`parent` given), a watchdog that ends the worker when the service that started it is gone."""
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), name="lane-parent-watchdog", daemon=True).start()
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: this thread (or process) only
    except (AttributeError, OSError):
        pass  # elsewhere the budget alone bounds the lane
    if memory_mb:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        except (ImportError, ValueError, OSError):
            pass


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Ends this worker once `parent` is no longer its parent process. A service stopped by
    SIGKILL (or the OOM killer) cannot shut its pool down; without this its worker (and the
    multiprocessing resource tracker that waits on it) would live on, orphaned, forever."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)


def _timed(function, args):
    """In the worker process: the call and the CPU time it took (the process runs nothing else)."""
    begin = time.process_time()
    result = function(*args)
    return result, time.process_time() - begin


def _thread_timed(function, args):
    begin = time.thread_time()
    result = function(*args)
    return result, time.thread_time() - begin


def _ready() -> bool:
    return True


class CostLane:
    """Runs expensive calls one at a time, niced, within `share` of one core.

    Args:
        share: float. Average fraction of one core the lane may use (0 < share <= 1).
        burst: float. CPU seconds the lane may spend at once after being idle.
        max_waiting: int. Calls that may queue behind the running one.
        process: bool. Run calls in a worker process (default) or in a thread of this one.
        memory_mb: int. Address-space cap of the worker process.
    """

    def __init__(self, share: float = 0.25, burst: float = 2.0, max_waiting: int = 1, process: bool = True,
                 memory_mb: int = 3072):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1]. Received: share={share}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0 seconds. Received: burst={burst}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0. Received: max_waiting={max_waiting}")
        self.share, self.burst, self.max_waiting = share, burst, max_waiting
        self.process, self.memory_mb = process, memory_mb
        self._lock = threading.Lock()
        self._tokens, self._stamp, self._inflight = burst, time.monotonic(), 0
        self.ran = self.refused = self.failed = 0  # counters for metrics and tests
        self.cpu_seconds = 0.0
        self._executor = self._start()

    def _start(self):
        if not self.process:
            return ThreadPoolExecutor(1, thread_name_prefix="large-images", initializer=_lane_setup)
        executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_lane_setup, initargs=(self.memory_mb, os.getpid()))
        executor.submit(_ready)  # start the worker now, not on the first large image
        return executor

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.share)
        self._stamp = now

    def _admit(self) -> None:
        with self._lock:
            self._refill()
            if self._tokens <= 0 or self._inflight > self.max_waiting:
                self.refused += 1
                wait = -self._tokens / self.share if self._tokens <= 0 else 1.0
                raise Busy(f"The server is at its budget for large images ({self.share:g} of a core); "
                           f"retry in {math.ceil(wait)} s or send a smaller image.", wait)
            self._inflight += 1

    def run(self, function, *args):
        """`function(*args)` in the lane, waiting for it; `Busy` when the budget or the queue is full.
        With a worker process, `function` and its arguments must pickle."""
        return self.submit(function, *args).result()

    def submit(self, function, *args) -> Future:
        """Like `run`, without waiting: a future (for asyncio: `asyncio.wrap_future`)."""
        self._admit()
        out: Future = Future()
        try:
            inner = self._executor.submit(_timed if self.process else _thread_timed, function, args)
        except (RuntimeError, BrokenProcessPool):  # shut down, or the worker died since the last call
            self._finish(None)
            self._replace()
            raise Busy("The large-image lane is restarting; retry.", 1.0) from None
        inner.add_done_callback(lambda done: self._settle(done, out))
        return out

    def _settle(self, done: Future, out: Future) -> None:
        try:
            result, spent = done.result()
        except BrokenProcessPool:
            self._finish(None)
            self.failed += 1
            self._replace()
            out.set_exception(LaneFailed("The image could not be decoded within this server's limits (the decoder "
                                         "ran out of memory or was stopped)."))
            return
        except BaseException as error:  # the function's own error (e.g. a damaged image), passed on
            self._finish(None)
            out.set_exception(error)
            return
        self._finish(spent)
        out.set_result(result)

    def _finish(self, spent: float | None) -> None:
        with self._lock:
            self._inflight -= 1
            if spent is not None:
                self._refill()
                self._tokens -= spent
                self.cpu_seconds += spent
                self.ran += 1

    def _replace(self) -> None:
        with self._lock:
            old, self._executor = self._executor, self._start()
        old.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
