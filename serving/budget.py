"""The large-image lane: expensive decodes run one at a time, at low priority, within a CPU budget.

    lane = CostLane(share=0.25)
    data = lane.run(prepare, header, target)   # or raises Busy (answered 503 with Retry-After)
    data = await asyncio.wrap_future(lane.submit(prepare, header, target))

A search's usual cost is the model's; decoding a large PNG, WebP or TIFF (tens of megapixels)
costs a hundred times that. Left in the common pool such requests starve everyone else. The lane
gives them:

- one worker thread, niced to the lowest CPU priority (Linux: per thread), so the kernel runs
  every ordinary request first when the cores are busy;
- a budget: the lane may spend `share` of one core on average (a token bucket of CPU seconds,
  refilled at `share` per second, holding at most `burst` seconds). When it is spent, a large
  image is answered at once with `Busy` (HTTP 503 and a Retry-After of when the budget will
  allow it) instead of waiting;
- at most `max_waiting` requests queued behind the one decoding; more are `Busy` too.

The CPU time charged is the worker's own (`time.thread_time`), measured per decode.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor


class Busy(Exception):
    """The lane's budget or queue is full: retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


def _lowest_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: this thread only
    except (AttributeError, OSError):
        pass  # elsewhere the budget alone bounds the lane


class CostLane:
    """Runs expensive calls one at a time, niced, within `share` of one core.

    Args:
        share: float. Average fraction of one core the lane may use (0 < share <= 1).
        burst: float. CPU seconds the lane may spend at once after being idle.
        max_waiting: int. Calls that may queue behind the running one.
    """

    def __init__(self, share: float = 0.25, burst: float = 2.0, max_waiting: int = 1):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1]. Received: share={share}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0 seconds. Received: burst={burst}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0. Received: max_waiting={max_waiting}")
        self.share, self.burst, self.max_waiting = share, burst, max_waiting
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="large-images", initializer=_lowest_priority)
        self._lock = threading.Lock()
        self._tokens, self._stamp, self._inflight = burst, time.monotonic(), 0
        self.ran = self.refused = 0  # counters for metrics and tests
        self.cpu_seconds = 0.0

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

    def _release(self, _=None) -> None:
        with self._lock:
            self._inflight -= 1

    def run(self, function, *args):
        """`function(*args)` in the lane, waiting for it; `Busy` when the budget or the queue is full."""
        return self.submit(function, *args).result()

    def submit(self, function, *args) -> Future:
        """Like `run`, without waiting: a future (for asyncio: `asyncio.wrap_future`)."""
        self._admit()
        try:
            future = self._executor.submit(self._timed, function, args)
        except RuntimeError:  # shut down
            self._release()
            raise Busy("The server is shutting down.", 1.0) from None
        future.add_done_callback(self._release)
        return future

    def _timed(self, function, args):
        begin = time.thread_time()
        try:
            return function(*args)
        finally:
            spent = time.thread_time() - begin
            with self._lock:
                self._refill()
                self._tokens -= spent
                self.cpu_seconds += spent
                self.ran += 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
