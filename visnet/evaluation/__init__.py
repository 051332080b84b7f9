"""Measuring embeddings: retrieval (mAP, Recall@K), closed-set k-NN and N-way K-shot accuracy.

Everything here takes NumPy arrays and labels, so any embedder plugs in; `embed_dataset` runs
one over a dataset's images and `run_benchmark` measures a whole protocol.
"""

from visnet.evaluation.benchmark import BenchmarkSettings, format_results, run_benchmark
from visnet.evaluation.classification import confusions, knn_accuracy, knn_predict
from visnet.evaluation.distances import pairwise_distances
from visnet.evaluation.embedding import embed_dataset
from visnet.evaluation.fewshot import FewShotResult, classifiers, evaluate_episodes
from visnet.evaluation.retrieval import RECALL_KS, RetrievalResult, retrieval_metrics

__all__ = [
    "RECALL_KS", "BenchmarkSettings", "FewShotResult", "RetrievalResult", "classifiers", "embed_dataset",
    "confusions", "evaluate_episodes", "format_results", "knn_accuracy", "knn_predict", "pairwise_distances",
    "retrieval_metrics", "run_benchmark",
]
