"""Server-side batching: concurrent `embed` calls share one model call (what TF Serving's
`--enable_batching` does for its clients).

    predictor = BatchingPredictor(ExportedModel("models/shop"), max_batch_size=16, timeout_ms=2)
    vectors, valid = predictor.embed([jpeg])   # from many threads at once

A worker thread takes the first waiting request, gathers more until `max_batch_size` images
are waiting or `timeout_ms` has passed, embeds them in one call and hands each request its
rows. If the batched call fails, each request of the batch is retried alone, so one bad request
cannot fail the others.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from visnet.exported import Predictor


class BatchingPredictor(Predictor):
    """Wraps a `Predictor`; `embed` is batched across threads, everything else is passed through.

    Args:
        predictor: `visnet.exported.Predictor`. The model (in-process or a TF Serving client).
        max_batch_size: int. Most images per model call.
        timeout_ms: float. Longest wait for more requests once one is waiting.
    """

    def __init__(self, predictor: Predictor, max_batch_size: int = 16, timeout_ms: float = 2.0):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1. Received: max_batch_size={max_batch_size}")
        if timeout_ms < 0:
            raise ValueError(f"timeout_ms must be >= 0. Received: timeout_ms={timeout_ms}")
        self.predictor, self.max_batch_size, self.timeout = predictor, max_batch_size, timeout_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, daemon=True, name="embed-batcher")
        self._worker.start()
        self.calls = 0  # model calls made, for tests and metrics

    def predict(self, inputs: dict, signature: str = "serving_default") -> dict:
        return self.predictor.predict(inputs, signature)

    def embed(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        return self.submit(images).result()

    def submit(self, images: list[bytes]) -> Future:
        """Queues `images` for the next batch; the future's result is `embed`'s (for asyncio: `asyncio.wrap_future`)."""
        future: Future = Future()
        self._queue.put((list(images), future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, size = [first], len(first[0])
            deadline = time.monotonic() + self.timeout
            while size < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
                size += len(item[0])
            self._serve(batch)

    def _serve(self, batch: list) -> None:
        images = [image for request, _ in batch for image in request]
        try:
            self.calls += 1
            vectors, valid = self.predictor.embed(images)
        except Exception as error:  # one request's failure must not fail the others: retry each alone
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for item in batch:
                self._serve([item])
            return
        start = 0
        for request, future in batch:
            stop = start + len(request)
            future.set_result((vectors[start:stop], valid[start:stop]))
            start = stop
