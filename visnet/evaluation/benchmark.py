"""One call that measures an embedder on a benchmark protocol: closed-set k-NN accuracy,
open-set retrieval (mAP, Recall@K) and the N-way K-shot table."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from visnet.data.image_spec import ImageSpec
from visnet.data.protocol import Protocol
from visnet.data.records import Dataset
from visnet.evaluation.classification import (
    choose_smoothing,
    confusions,
    held_out_mask,
    knn_predict,
    smooth_gallery,
)
from visnet.evaluation.embedding import Embedder, embed_dataset
from visnet.evaluation.fewshot import accuracy_grid
from visnet.evaluation.retrieval import RECALL_KS, retrieval_metrics
from visnet.index.expansion import Expansion


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """What to measure. `None` for ways/shots/queries/episodes/seed means: as the protocol says.

    `expansion` re-ranks open-set retrieval (query expansion and database-side augmentation over
    the support images, `visnet.index.expansion`); closed-set k-NN and few-shot are unchanged.
    `gallery_smoothing` k replaces each closed-set training photo by the mean of itself and its k
    nearest training photos of the same label before k-NN (`classification.smooth_gallery`);
    `"auto"` chooses k on `held_out`, the ids of training photos a run held out of its training
    (`classification.choose_smoothing`)."""

    recall_ks: tuple[int, ...] = RECALL_KS
    knn_ks: tuple[int, ...] = (1, 5)
    ways: tuple[int, ...] | None = None
    shots: tuple[int, ...] | None = None
    queries: int | None = None
    episodes: int | None = None
    seed: int | None = None
    classifiers: tuple[str, ...] = ("prototype",)
    metric: str = "euclidean"
    batch_size: int = 64
    expansion: Expansion = Expansion()
    gallery_smoothing: int | str = 0
    held_out: frozenset[str] = frozenset()


def run_benchmark(
    embedder: Embedder,
    dataset: Dataset,
    protocol: Protocol,
    settings: BenchmarkSettings = BenchmarkSettings(),
    spec: ImageSpec | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Embeds the protocol's images once and computes every figure.

    Args:
        embedder: callable from image batches to vectors (see `embed_dataset`).
        dataset: `Dataset` holding (at least) the protocol's ids.
        protocol: `Protocol`.
        settings: `BenchmarkSettings`.
        spec: `ImageSpec` or None (default: the embedder's).
        progress: bool. Progress bars.
        log: callable receiving one-line progress messages.

    Returns:
        A JSON-ready dict with `closed_set`, `open_set`, `few_shot`, `counts`, `skipped` and
        `seconds`.
    """
    timings: dict[str, float] = {}
    episodes = protocol.episodes
    ways = settings.ways or episodes.ways
    shots = settings.shots or episodes.shots
    queries = settings.queries or episodes.queries_per_class
    count = settings.episodes or episodes.count
    seed = episodes.seed if settings.seed is None else settings.seed

    needed = list(dict.fromkeys(
        [*protocol.train_ids, *protocol.test_ids, *protocol.support_ids, *protocol.query_ids,
         *(i for ids in protocol.novel_pool.values() for i in ids)]
    ))
    known = set(dataset.ids)
    subset = dataset.select([i for i in needed if i in known], "protocol images")
    missing = [i for i in needed if i not in known]
    for i in missing:
        subset.report.add("protocol id not in the dataset (unreadable or absent)", i)
    log(f"embedding {len(subset)} images ({len(missing)} protocol ids missing)")
    start = time.perf_counter()
    embedded, vectors = embed_dataset(embedder, subset, spec, settings.batch_size, progress)
    timings["embedding"] = time.perf_counter() - start
    row = {record.id: i for i, record in enumerate(embedded)}

    def part(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        kept = [row[i] for i in ids if i in row]
        return vectors[kept], np.array([embedded[j].label for j in kept])

    results: dict = {"protocol": protocol.name, "metric": settings.metric}

    start = time.perf_counter()
    train_x, train_y = part(protocol.train_ids)
    test_x, test_y = part(protocol.test_ids)
    closed = {"classes": len(protocol.classes), "train": len(train_y), "test": len(test_y)}
    if len(train_y) and len(test_y):
        k_values = [k for k in settings.knn_ks if k <= len(train_y)]
        smoothing = settings.gallery_smoothing
        if smoothing == "auto":
            if not settings.held_out:
                raise ValueError("gallery_smoothing='auto' chooses K on held-out training photos: give their ids "
                                 "(held_out).")
            held_out = held_out_mask([i for i in protocol.train_ids if i in row], settings.held_out)
            smoothing, grid = choose_smoothing(train_x, train_y, held_out, metric=settings.metric)
            closed["gallery_smoothing_choice"] = {"k": smoothing, "validation_photos": int(held_out.sum()),
                                                  "grid": grid}
        if smoothing:
            train_x = smooth_gallery(train_x, train_y, smoothing)
            closed["gallery_smoothing"] = smoothing
        predictions = knn_predict(train_x, train_y, test_x, k_values, settings.metric)
        closed["knn_accuracy"] = {str(k): float(np.mean(p == test_y)) for k, p in predictions.items()}
        if 1 in predictions:  # where nearest-neighbour classification goes wrong, most frequent first
            closed["errors"] = int(np.sum(predictions[1] != test_y))
            closed["confusions"] = confusions(test_y, predictions[1], top=10)
        log("closed-set k-NN done")
    else:
        closed["skipped"] = "the protocol has no closed-set train/test images"
    results["closed_set"] = closed
    timings["closed_set"] = time.perf_counter() - start

    start = time.perf_counter()
    support_x, support_y = part(protocol.support_ids)
    query_x, query_y = part(protocol.query_ids)
    open_ = {"support": len(support_y), "query": len(query_y)}
    if len(support_y) and len(query_y):
        if settings.expansion.active:  # on unit vectors: euclidean ranks as cosine
            query_x, support_x = settings.expansion.apply(query_x, support_x)
            open_["expansion"] = str(settings.expansion)
        open_.update(retrieval_metrics(query_x, query_y, support_x, support_y, settings.recall_ks,
                                       settings.metric).to_dict())
        log("open-set retrieval done")
    else:
        open_["skipped"] = "the protocol has no open-set support/query images"
    results["open_set"] = open_
    timings["open_set"] = time.perf_counter() - start

    start = time.perf_counter()
    pool_x, pool_y = part([i for ids in protocol.novel_pool.values() for i in ids])
    table = []
    for classifier in settings.classifiers:
        table.extend(accuracy_grid(pool_x, pool_y, ways, shots, queries, count, seed, classifier, settings.metric,
                                   progress=progress, log=log))
        log(f"few-shot {classifier} done")
    results["few_shot"] = table
    timings["few_shot"] = time.perf_counter() - start

    results["counts"] = {"protocol_images": len(needed), "embedded": len(embedded), "pool": len(pool_y)}
    results["skipped"] = embedded.report.to_dict()
    results["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return results


def embed_pool(embedder: Embedder, dataset: Dataset, protocol: Protocol, batch_size: int = 64,
               progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of the protocol's novel-class pool, the images few-shot episodes come from."""
    ids = [i for pool in protocol.novel_pool.values() for i in pool]
    known = set(dataset.ids)
    subset = dataset.select([i for i in ids if i in known], "novel pool")
    embedded, vectors = embed_dataset(embedder, subset, None, batch_size, progress)
    return vectors, np.array([record.label for record in embedded])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_results(results: dict, markdown: bool = False) -> str:
    """The results of `run_benchmark` as text tables (or Markdown)."""
    lines = []

    def title(text: str) -> None:
        lines.extend([f"**{text}**", ""] if markdown else [text])

    def table(header: list[str], rows: list[list[str]]) -> None:
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
            lines.extend("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)
        lines.append("")

    closed = results["closed_set"]
    smoothing = (f"; each training photo averaged with its {closed['gallery_smoothing']} nearest of its label"
                 if closed.get("gallery_smoothing") else "")
    choice = closed.get("gallery_smoothing_choice")
    if choice:
        smoothing = f"{smoothing or '; no gallery smoothing'}, as {choice['validation_photos']} held-out training photos chose"
    title(f"Closed-set k-NN accuracy ({closed['classes']} classes, {closed['train']} train / {closed['test']} test"
          f"{smoothing})")
    if "skipped" in closed:
        lines += [f"skipped: {closed['skipped']}", ""]
    else:
        table(["k", "accuracy"], [[k, _pct(v)] for k, v in closed["knn_accuracy"].items()])
        if closed.get("confusions"):
            title(f"Most frequent 1-NN mistakes (of {closed['errors']})")
            table(["label", "predicted", "photos"], [[c["label"], c["predicted"], str(c["count"])]
                                                     for c in closed["confusions"]])
    open_ = results["open_set"]
    reranked = f", re-ranked with {open_['expansion']}" if open_.get("expansion") else ""
    title(f"Open-set retrieval ({open_['query']} queries against {open_['support']} support images{reranked})")
    if "skipped" in open_:
        lines += [f"skipped: {open_['skipped']}", ""]
    else:
        table(["mAP", *(f"R@{k}" for k in open_["recall"])],
              [[f"{open_['mAP']:.3f}", *(f"{v:.3f}" for v in open_["recall"].values())]])
    few = results["few_shot"]
    if few:
        title(f"N-way K-shot accuracy (mean ± 95% CI over {max(r['episodes'] for r in few)} episodes, "
                     f"{few[0]['queries_per_class']} queries per class)")
        rows = []
        for r in few:
            value = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}%"
            rows.append([r["classifier"], f"{r['ways']}-way {r['shots']}-shot", value])
        table(["classifier", "task", "accuracy"], rows)
        lines.extend(f"n/a {r['ways']}-way {r['shots']}-shot: {r['error']}" for r in few if r.get("error"))
    return "\n".join(lines).rstrip() + "\n"
