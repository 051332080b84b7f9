"""visnet: fashion product identification and visual search with Keras 3.

The package is organised the way data flows through it::

    visnet.data        readers -> records -> tf.data pipelines, samplers, generated catalogue
    visnet.baselines   embedders that need no training (HOG, raw pixels)
    visnet.evaluation  retrieval mAP / Recall@K, kNN accuracy, N-way K-shot episodes
    visnet.evaluate    command line: embed a benchmark protocol and print every figure

No module imports from a stage later in that chain.
"""

import os

# TensorFlow prints pages of INFO/WARNING lines at import; keep errors only unless the user asked.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
