"""Server-side batching of concurrent embed calls: fewer model calls, each caller gets its own rows."""

import threading

import numpy as np
import pytest

from serving.batching import BatchingPredictor
from visnet.exported import InvalidInputError, Predictor


class Recorder(Predictor):
    """Embeds each string as [its length, its first byte]; fails a call holding b"bad"."""

    def __init__(self):
        self.sizes = []

    def embed(self, images):
        self.sizes.append(len(images))
        if b"bad" in images:
            raise InvalidInputError("bad image in the batch")
        vectors = np.array([[len(x), x[0] if x else 0] for x in images], np.float32)
        return vectors, np.ones(len(images), bool)


def test_concurrent_calls_share_model_calls_and_get_their_own_rows():
    inner = Recorder()
    batcher = BatchingPredictor(inner, max_batch_size=8, timeout_ms=50)
    results, barrier = {}, threading.Barrier(12)

    def call(i):
        barrier.wait()
        results[i] = batcher.embed([bytes([i]) * (i + 1), bytes([100 + i])])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for i in range(12):
        vectors, valid = results[i]
        np.testing.assert_array_equal(vectors, [[i + 1, i], [1, 100 + i]])
        assert valid.tolist() == [True, True]
    assert sum(inner.sizes) == 24 and len(inner.sizes) < 12 and max(inner.sizes) <= 9  # 8, +1 request's second


def test_one_bad_request_fails_alone():
    inner = Recorder()
    batcher = BatchingPredictor(inner, max_batch_size=16, timeout_ms=100)
    outcomes, barrier = {}, threading.Barrier(4)

    def call(i, data):
        barrier.wait()
        try:
            outcomes[i] = batcher.embed([data])[0][0, 0]
        except InvalidInputError as error:
            outcomes[i] = str(error)

    threads = [threading.Thread(target=call, args=(i, b"bad" if i == 2 else b"x" * (i + 1))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert outcomes == {0: 1.0, 1: 2.0, 2: "bad image in the batch", 3: 4.0}


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        BatchingPredictor(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="timeout_ms must be >= 0"):
        BatchingPredictor(Recorder(), timeout_ms=-1)
