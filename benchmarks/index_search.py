"""Retrieval index speed and accuracy: build time, single-query latency and recall@10 against
exact search, on synthetic clustered unit vectors.

Data: a Gaussian mixture. `--centres` random unit vectors (default 1000) in `--dim` dimensions;
each vector is a centre plus isotropic Gaussian noise of total norm about `--spread` (default
0.5), L2-normalised, and the queries are fresh draws from the same mixture. (Uniform random
vectors in 128-d are unrealistic for any approximate index: every point is about equally far
from every other.) The exact neighbours come from a chunked float32 matrix product.

Build: `add_batch` of all vectors (insert throughput) then `build()` (for Milvus: flush and wait for
its index), with every core; memory is the growth of this process's RSS (Milvus Lite runs in it).
Batched: one `search_batch` of 100 queries. Latency: `index.search(q, 10)`
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

from benchmarks.common import header, host, write_report  # noqa: E402
from visnet.cli import int_list, key_value, name_list  # noqa: E402

K = 10
BATCH = 100  # queries per search_batch call in the batched measurement


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
            truth: np.ndarray, budget: float, dataset: str = "mixture") -> dict:
    """Build time, latency percentiles and recall@10 of one backend on one data set."""
    import visnet.index

    try:
        import faiss
    except ImportError:
        faiss = None
    from threadpoolctl import threadpool_limits

    workdir, server = None, False
    if config["name"] == "milvus":  # a fresh Milvus Lite file per data set, or a fresh collection on a server
        import tempfile

        from visnet.index.milvus_index import is_lite

        server = "uri" in config and not is_lite(config["uri"])
        if not server:
            workdir = tempfile.mkdtemp(prefix="visnet-milvus-")
        config = {"uri": os.path.join(workdir, "bench.db") if workdir else config["uri"],
                  "collection": f"bench_{dataset}_{len(data)}", **config}
    memory = rss_mb()
    index = visnet.index.get(config)
    start = time.perf_counter()
    index.add_batch(ids, data)
    inserted = time.perf_counter()
    index.build()
    built = time.perf_counter()
    insert, build = inserted - start, built - inserted
    memory = rss_mb() - memory  # for a server, only the client's: not reported

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
        batch = queries[:BATCH]
        start = time.perf_counter()
        index.search_batch(batch, K)
        batch_ms = (time.perf_counter() - start) * 1000 / len(batch)
    if faiss:
        faiss.omp_set_num_threads(threads)
    milliseconds = np.array(latencies) * 1000
    row = {"backend": backend, "data": dataset, "config": index.get_config(), "size": len(data),
           "insert_seconds": round(insert, 3), "inserts_per_second": round(len(data) / max(insert, 1e-9), 1),
           "build_seconds": round(build, 3), "memory_mb": None if server else round(memory, 1),
           "latency_ms_median": round(float(np.median(milliseconds)), 4),
           "latency_ms_p99": round(float(np.percentile(milliseconds, 99)), 4),
           "batch_ms_per_query": round(batch_ms, 4),
           "recall_at_10": round(float(np.mean(hits)), 4), "queries_measured": len(latencies)}
    print(f"{dataset:<8} {len(data):>9} {backend:<12} insert {insert:8.2f}s build {build:8.2f}s "
          f"+{memory:7.0f} MB median {row['latency_ms_median']:8.3f} ms p99 {row['latency_ms_p99']:8.3f} ms "
          f"batch {batch_ms:7.3f} ms/q recall@10 {row['recall_at_10']:.4f} ({len(latencies)} queries)",
          file=sys.stderr, flush=True)
    if server:
        index._client.drop_collection(index.collection)
    if workdir:
        index.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return row


def rss_mb() -> float:
    """This process's resident memory (Linux), MB."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return float("nan")


def markdown(report: dict) -> str:
    s = report["settings"]
    servers = sorted({r["config"]["uri"] for r in report["rows"] if "://" in str(r["config"].get("uri", ""))})
    lines = [
        "### Retrieval index: build time, single-query latency and recall@10"
        + (f" (a Milvus server at {', '.join(servers)}: client and server on the same host)" if servers else ""),
        "",
        f"Command: `{report['command']}`  ",
        f"Data: {s['dim']}-d unit vectors from a Gaussian mixture of {s['centres']} centres (noise norm "
        f"{s['spread']}), queries from the same mixture; recall@10 against exact search. Latency: one query at "
        f"a time through `index.search`, BLAS and faiss limited to 1 thread; builds use all "
        f"{report['machine']['cpus']} CPUs. Insert: `add_batch` throughput; build: `build()` after it (Milvus: flush "
        "and wait for its index); memory: growth of this process's RSS over insert and build (Milvus Lite runs in "
        "the process; meaningful at 1M, negative where memory freed by the previous row was reused); batched: one "
        f"`search_batch` of {BATCH} queries. numpy {report['versions']['numpy']}, scikit-learn "
        f"{report['versions']['scikit-learn']}, faiss-cpu {report['versions']['faiss-cpu']}"
        + (f", pymilvus {report['versions'].get('pymilvus')}, milvus-lite {report['versions'].get('milvus-lite')}"
           if report['versions'].get('pymilvus') else "")
        + f"; {host(report['machine'])}; wall time {report['wall_seconds']:.0f} s.",
        "",
        "| data | vectors | index | settings | insert (vectors/s) | build (s) | memory (MB) | median latency (ms) "
        "| p99 latency (ms) | batched (ms/query) | recall@10 | queries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        unused = {"hnsw": ("nlist", "nprobe"), "ivf": ("M", "ef_construction", "ef_search")}.get(
            r["config"].get("kind"), ())
        if r["backend"].startswith("milvus"):
            unused = ("uri", "collection", "timeout", *(("M", "ef_construction", "ef_search")
                                                       if not r["config"].get("index_type", "").startswith("HNSW")
                                                       else ("nlist", "nprobe")))
        settings = ", ".join(f"{k}={v}" for k, v in r["config"].items()
                             if k not in ("dim", "kind", *unused) and v is not None)
        missing = "-"
        lines.append(f"| {r.get('data', 'mixture')} | {r['size']:,} | `{r['backend']}` | {settings or '-'} | "
                     f"{r['inserts_per_second']:,.0f} | {r['build_seconds']:.2f} | {missing if r.get('memory_mb') is None else r['memory_mb']} | "
                     f"{r['latency_ms_median']:.3f} | {r['latency_ms_p99']:.3f} | "
                     f"{r.get('batch_ms_per_query', missing)} | {r['recall_at_10']:.3f} | {r['queries_measured']} |"
                     if "inserts_per_second" in r else
                     f"| {r.get('data', 'mixture')} | {r['size']:,} | `{r['backend']}` | {settings or '-'} | - | "
                     f"{r['build_seconds']:.2f} | - | {r['latency_ms_median']:.3f} | {r['latency_ms_p99']:.3f} | - | "
                     f"{r['recall_at_10']:.3f} | {r['queries_measured']} |")
    if report["settings"].get("real"):
        real = report["settings"]["real"]
        lines += ["", f"`products`: real embeddings ({real['model']}, {real['dim']}-d) of {real['data']}: the gallery "
                      f"holds every photo except {real['queries']:,} held-out ones and {real['copies']} augmented copies "
                      "of every photo (`benchmarks/product_embeddings.py`); the held-out photos are the queries."]
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
                        help="visnet.index names, comma-separated (faiss-hnsw, faiss-ivf, brute, balltree, milvus: "
                             "Milvus Lite in a temporary file)")
    parser.add_argument("--option", action="append", default=[], metavar="BACKEND:KEY=VALUE",
                        help="index option, e.g. faiss-hnsw:ef_search=128 (repeatable)")
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5, help="norm of the noise around a unit centre")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of queries per backend and size")
    parser.add_argument("--real", metavar="NPZ", help="also real product embeddings (benchmarks/product_embeddings.py)")
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

    real = None
    if args.real:
        stored = np.load(args.real)
        gallery, real_queries = stored["gallery"].astype(np.float32), stored["queries"].astype(np.float32)
        real = {"model": str(stored["model"]), "data": str(stored["data"]), "copies": int(stored["copies"]),
                "queries": len(real_queries), "dim": gallery.shape[1], "size": len(gallery)}
        ids = [f"r{i}" for i in range(len(gallery))]
        truth = exact_neighbours(gallery, real_queries, K)
        for backend in args.backends:
            rows.append(measure(backend, index_config(backend, options), gallery, ids, real_queries, truth,
                                args.budget, dataset="products"))
            gc.collect()

    report = {
        **header("index_search", "benchmarks/index_search.py", argv if argv is not None else sys.argv[1:],
                 ("faiss-cpu", "threadpoolctl", "pymilvus", "milvus-lite")),
        "settings": {"sizes": list(args.sizes), "dim": args.dim, "queries": args.queries, "k": K,
                     "backends": list(args.backends), "options": options, "centres": args.centres,
                     "spread": args.spread, "seed": args.seed, "budget_seconds": args.budget, "real": real,
                     "data": "Gaussian mixture of unit centres, normalised; queries from the same mixture",
                     "latency": "one query at a time, BLAS and faiss OpenMP limited to 1 thread"},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    write_report(report, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
