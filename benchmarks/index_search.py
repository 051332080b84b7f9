"""Retrieval index speed and accuracy: build time, single-query latency and recall@10 against
exact search, on synthetic clustered unit vectors.

Data: a Gaussian mixture. `--centres` random unit vectors (default 1000) in `--dim` dimensions;
each vector is a centre plus isotropic Gaussian noise of total norm about `--spread` (default
0.5), L2-normalised, and the queries are fresh draws from the same mixture. (Uniform random
vectors in 128-d are unrealistic for any approximate index: every point is about equally far
from every other.) The exact neighbours come from a chunked float32 matrix product.

Build: `add_batch` of all vectors then `build()`, with every core. Latency: `index.search(q, 10)`
one query at a time, with BLAS and faiss's OpenMP limited to one thread (per-query latency on
a shared machine; the service answers concurrent requests from several threads). Each backend
gets at most `--budget` seconds of queries per size; the rows say how many were measured.

    python benchmarks/index_search.py --sizes 10000,100000,1000000 --dim 128 --queries 1000 \\
        --backends balltree,brute,faiss-hnsw
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402
from visnet.cli import int_list, key_value, name_list  # noqa: E402

K = 10


def mixture(n: int, centres: np.ndarray, spread: float, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """n normalised draws from the mixture around `centres` (float32, made in chunks)."""
    dim = centres.shape[1]
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        which = rng.integers(len(centres), size=stop - start)
        points = centres[which] + rng.normal(scale=spread / np.sqrt(dim), size=(stop - start, dim))
        out[start:stop] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return out


def exact_neighbours(data: np.ndarray, queries: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """Row numbers of the k most similar data rows of each query (chunked float32 products)."""
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ data.T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(best, order, axis=1)
    return out


def index_config(backend: str, options: dict[str, dict]) -> dict:
    return {"name": backend, **options.get(backend, {})}


def measure(backend: str, config: dict, data: np.ndarray, ids: list[str], queries: np.ndarray,
            truth: np.ndarray, budget: float) -> dict:
    """Build time, latency percentiles and recall@10 of one backend on one data set."""
    import visnet.index

    try:
        import faiss
    except ImportError:
        faiss = None
    from threadpoolctl import threadpool_limits

    index = visnet.index.get(config)
    start = time.perf_counter()
    index.add_batch(ids, data)
    index.build()
    build = time.perf_counter() - start

    latencies, hits = [], []
    threads = faiss.omp_get_max_threads() if faiss else None
    with threadpool_limits(1):
        if faiss:
            faiss.omp_set_num_threads(1)
        index.search(queries[0], K)  # warm-up
        began = time.perf_counter()
        for query, exact in zip(queries, truth):
            start = time.perf_counter()
            found = index.search(query, K)
            latencies.append(time.perf_counter() - start)
            hits.append(len({id for id, _ in found} & {ids[i] for i in exact}) / K)
            if time.perf_counter() - began > budget:
                break
    if faiss:
        faiss.omp_set_num_threads(threads)
    milliseconds = np.array(latencies) * 1000
    row = {"backend": backend, "config": index.get_config(), "size": len(data), "build_seconds": round(build, 3),
           "latency_ms_median": round(float(np.median(milliseconds)), 4),
           "latency_ms_p99": round(float(np.percentile(milliseconds, 99)), 4),
           "recall_at_10": round(float(np.mean(hits)), 4), "queries_measured": len(latencies)}
    print(f"{len(data):>9} {backend:<12} build {build:8.2f}s  median {row['latency_ms_median']:8.3f} ms  "
          f"p99 {row['latency_ms_p99']:8.3f} ms  recall@10 {row['recall_at_10']:.4f}  ({len(latencies)} queries)",
          file=sys.stderr)
    return row


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "### Retrieval index: build time, single-query latency and recall@10",
        "",
        f"Command: `{report['command']}`  ",
        f"Data: {s['dim']}-d unit vectors from a Gaussian mixture of {s['centres']} centres (noise norm "
        f"{s['spread']}), queries from the same mixture; recall@10 against exact search. Latency: one query at "
        f"a time through `index.search`, BLAS and faiss limited to 1 thread; builds use all "
        f"{report['machine']['cpus']} CPUs. numpy {report['versions']['numpy']}, scikit-learn "
        f"{report['versions']['scikit-learn']}, faiss-cpu {report['versions']['faiss-cpu']}; wall time "
        f"{report['wall_seconds']:.0f} s.",
        "",
        "| vectors | index | settings | build (s) | median latency (ms) | p99 latency (ms) | recall@10 | queries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        unused = {"hnsw": ("nlist", "nprobe"), "ivf": ("M", "ef_construction", "ef_search")}.get(
            r["config"].get("kind"), ())
        settings = ", ".join(f"{k}={v}" for k, v in r["config"].items()
                             if k not in ("dim", "kind", *unused) and v is not None)
        lines.append(f"| {r['size']:,} | `{r['backend']}` | {settings or '-'} | {r['build_seconds']:.2f} | "
                     f"{r['latency_ms_median']:.3f} | {r['latency_ms_p99']:.3f} | {r['recall_at_10']:.3f} | "
                     f"{r['queries_measured']} |")
    return "\n".join(lines) + "\n"


def parse_options(values: list[str]) -> dict[str, dict]:
    """BACKEND:KEY=VALUE strings -> {backend: {key: value}}."""
    options: dict[str, dict] = {}
    for text in values:
        backend, sep, setting = text.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected BACKEND:KEY=VALUE, got {text!r}")
        key, value = key_value(setting)
        options.setdefault(backend, {})[key] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=(10_000, 100_000, 1_000_000), help="comma-separated")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--backends", type=name_list, default=("balltree", "brute", "faiss-hnsw"),
                        help="visnet.index names, comma-separated (faiss-hnsw, faiss-ivf, brute, balltree)")
    parser.add_argument("--option", action="append", default=[], metavar="BACKEND:KEY=VALUE",
                        help="index option, e.g. faiss-hnsw:ef_search=128 (repeatable)")
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5, help="norm of the noise around a unit centre")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of queries per backend and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "index_search"),
                        help="output path without extension: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.dim < 1 or args.centres < 1:
        parser.error("--queries, --dim and --centres must be >= 1")
    options = parse_options(args.option)

    import sklearn.neighbors  # noqa: F401 - imported lazily by the ball tree; not part of its build time

    began = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.centres, args.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = mixture(args.queries, centres, args.spread, rng)
    rows = []
    for size in args.sizes:
        data = mixture(size, centres, args.spread, np.random.default_rng([args.seed, size]))
        ids = [f"p{i}" for i in range(size)]
        truth = exact_neighbours(data, queries, K)
        for backend in args.backends:
            rows.append(measure(backend, index_config(backend, options), data, ids, queries, truth, args.budget))
            gc.collect()
        del data, ids
        gc.collect()

    report = {
        **header("index_search", "benchmarks/index_search.py", argv if argv is not None else sys.argv[1:],
                 ("faiss-cpu", "threadpoolctl")),
        "settings": {"sizes": list(args.sizes), "dim": args.dim, "queries": args.queries, "k": K,
                     "backends": list(args.backends), "options": options, "centres": args.centres,
                     "spread": args.spread, "seed": args.seed, "budget_seconds": args.budget,
                     "data": "Gaussian mixture of unit centres, normalised; queries from the same mixture",
                     "latency": "one query at a time, BLAS and faiss OpenMP limited to 1 thread"},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    write_report(report, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
