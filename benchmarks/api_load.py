"""Load test of the search service on loopback: `--clients` concurrent clients x `--requests` photo searches each.

Starts `python -m serving.api --model M --index I` as its own process (embedding in-process,
as a single-machine deployment does), once per `--batch-sizes` value (the service's
server-side batching, `serving.batching`), waits for /healthz, then each client thread sends its
searches one after another over one keep-alive connection: `POST /search?k=10` with a
multipart photo drawn (seeded) from the gallery's own images. Every answer must be a 200 with
k results; anything else counts as an error. Latency is per request, client-side.

    python benchmarks/api_load.py --model benchmarks/models/weakly-siamese-trunk --index benchmarks/index/fashion
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402
from visnet.cli import int_list  # noqa: E402


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client(port: int, photos: list[bytes], picks: np.ndarray, k: int, out: list, errors: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for pick in picks:
        body, kind = multipart(photos[pick])
        start = time.perf_counter()
        try:
            connection.request("POST", f"/search?k={k}", body=body, headers={"Content-Type": kind})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200 or len(json.loads(payload)["results"]) != k:
                errors.append(f"HTTP {response.status}: {payload[:200]!r}")
            else:
                out.append(elapsed)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            errors.append(f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.close()


def load(args: argparse.Namespace, batch_size: int, photos: list[bytes], rng: np.random.Generator) -> tuple:
    """Starts the service with `--batch-size batch_size`, runs the clients, stops it: (row, health)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen([sys.executable, "-m", "serving.api", "--model", args.model, "--index", args.index,
                               "--port", str(port), "--batch-size", str(batch_size)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = server.stdout.readline().strip()
        for _ in range(600):
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/healthz")
                health = json.loads(probe.getresponse().read())
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the service did not start: {banner}")
        client(port, photos, np.arange(4), args.k, [], [])  # warm-up: the first calls trace the graph
        latencies, errors = [], []
        picks = [rng.integers(len(photos), size=args.requests) for _ in range(args.clients)]
        threads = [threading.Thread(target=client, args=(port, photos, p, args.k, latencies, errors))
                   for p in picks]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=60)
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    row = {"batch_size": batch_size, "requests": args.clients * args.requests, "errors": len(errors),
           "error_samples": errors[:5], "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
           "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "throughput": len(latencies) / elapsed,
           "seconds": elapsed}
    print(f"batch size {batch_size}: {row['throughput']:.1f} searches/s, p50 {row['p50_ms']:.0f} ms, "
          f"p99 {row['p99_ms']:.0f} ms, {len(errors)} errors", file=sys.stderr)
    return row, health


def markdown(report: dict) -> str:
    s = report["settings"]
    return "\n".join([
        "### Search API under load (loopback)",
        "",
        f"Command: `{report['command']}`  ",
        f"{s['clients']} concurrent clients x {s['requests']} photo searches (k={s['k']}) against `python -m "
        f"serving.api` (embedding in-process, `{s['backend']}` index of {s['items']:,} items, model "
        f"{s['model']}); client and server share the machine's {report['machine']['cpus']} CPUs; wall time "
        f"{report['wall_seconds']:.0f} s.",
        "",
        "| `--batch-size` | requests | errors | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | searches/s |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['batch_size']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | "
          f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['throughput']:.1f} |" for r in report["rows"]),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export base path (models/NAME)")
    parser.add_argument("--index", required=True, help="gallery directory")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="searches per client")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int_list, default=(16, 1),
                        help="the service's --batch-size, one run each (default 16,1: batched, then one at a time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "api_load"),
                        help="output path without extension: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.k) < 1:
        parser.error("--clients, --requests and --k must be >= 1")

    from visnet.index import Gallery

    gallery = Gallery.load(args.index)
    paths = [gallery.get(i)["image"] for i in gallery.ids()]
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(paths), size=min(500, len(paths)), replace=False)
    photos = [open(paths[i], "rb").read() for i in chosen]
    backend, items = type(gallery.index).name, len(gallery)
    del gallery

    began = time.perf_counter()
    rows, health = [], {}
    for batch_size in args.batch_sizes:
        row, health = load(args, batch_size, photos, np.random.default_rng([args.seed, batch_size]))
        rows.append(row)
    report = {
        **header("api_load", "benchmarks/api_load.py", argv if argv is not None else sys.argv[1:],
                 ("fastapi", "uvicorn")),
        "settings": {"clients": args.clients, "requests": args.requests, "k": args.k, "backend": backend,
                     "batch_sizes": list(args.batch_sizes),
                     "items": items, "model": f"{health['model']['name']} v{health['model']['version']} "
                                              f"({health['arch']})"},
        "wall_seconds": round(time.perf_counter() - began, 1), "rows": rows,
    }
    write_report(report, args.out, markdown)
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
