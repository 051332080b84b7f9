"""Embeddings per second per core of an export: what one TF Serving replica of N cores gives.

For each `--threads` value, a fresh process loads the export with TensorFlow limited to that many
intra-op threads (and 1 inter-op thread) and embeds `--batches` batches of `--batch-size` benchmark
photos (encoded bytes through `serving_default`: decoding, checks, resizing and the model, as TF
Serving runs it), after one warm-up batch; the best of `--repeats` passes is kept. Replicas of
the model scale out with no shared state, so a deployment's embedding throughput is the
per-replica figure times the replicas (until the clients or the network are the limit).

    python benchmarks/embedding_per_core.py --model benchmarks/models/effnet-siamese \\
        --data ../shared/data/fashion-products --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.common import header, host, write_report  # noqa: E402
from visnet.cli import int_list  # noqa: E402

CHILD = """
import json, sys, time
import tensorflow as tf
threads, model_path, paths, batch_size, batches, repeats = json.loads(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
from visnet.exported import ExportedModel
model = ExportedModel(model_path)
images = [open(p, "rb").read() for p in paths]
model.embed(images[:batch_size])
best = 0.0
for _ in range(repeats):
    start = time.perf_counter()
    for b in range(batches):
        model.embed(images[b * batch_size:(b + 1) * batch_size])
    best = max(best, batches * batch_size / (time.perf_counter() - start))
print(json.dumps({"images_per_second": best}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export base path (models/NAME)")
    parser.add_argument("--data", required=True, help="benchmark dataset (its first images are used)")
    parser.add_argument("--threads", type=int_list, default=(1, 2), help="intra-op threads, one process each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "embedding_per_core"),
                        help="output path without extension: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    from visnet.data.readers import load_dataset
    from visnet.exporting import latest_version, read_metadata

    began = time.perf_counter()
    records = load_dataset(args.data, progress=False).records[: args.batch_size * args.batches]
    paths = [record.path for record in records]
    metadata = read_metadata(latest_version(args.model))
    rows = []
    for threads in args.threads:
        payload = json.dumps([threads, os.path.abspath(args.model), paths, args.batch_size, args.batches,
                              args.repeats])
        out = subprocess.run([sys.executable, "-c", CHILD, payload], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=True)
        speed = json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]
        rows.append({"threads": threads, "images_per_second": round(speed, 1),
                     "per_thread": round(speed / threads, 1)})
        print(f"{threads} thread(s): {speed:.1f} images/s", file=sys.stderr)
    spec = metadata["image_spec"]
    report = {**header("embedding_per_core", "benchmarks/embedding_per_core.py",
                       argv if argv is not None else sys.argv[1:]),
              "settings": {"model": f"{metadata['name']} v{metadata['version']} ({metadata['arch']}, "
                                    f"{metadata.get('embedding_dim')}-d)",
                           "input": f"{spec['height']}x{spec['width']}", "batch_size": args.batch_size,
                           "images": len(paths)},
              "wall_seconds": round(time.perf_counter() - began, 1), "rows": rows}
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = ["### Embedding throughput per core (the exported model)", "",
             f"Command: `{report['command']}`  ",
             f"Model {s['model']} at {s['input']}, encoded photos through `serving_default` in batches of "
             f"{s['batch_size']}, one process per setting, TensorFlow limited to the intra-op threads shown; "
             f"{host(report['machine'])}.", "",
             "| intra-op threads | images/s | images/s per thread |", "|---|---|---|"]
    lines += [f"| {r['threads']} | {r['images_per_second']:.1f} | {r['per_thread']:.1f} |" for r in report["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
