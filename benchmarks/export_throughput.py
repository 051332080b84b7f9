"""Embeddings/s through the exported SavedModel against the Keras model, same CPU, same batches, one run.

The run is exported (`visnet.exporting.export_run`) to a temporary folder. The same `--batches`
batches of `--batch-size` benchmark images are then embedded, alternating `--repeats` times:

- `keras`: the Keras embedding model's `predict_on_batch` on images already decoded, resized and
  normalised (the model alone);
- `keras+decode`: the same, plus decoding and resizing each batch with the training pipeline's
  own functions (`preprocess_bytes`) in a `tf.function`: what an in-process server would do;
- `saved_model`: the SavedModel's `serving_default` signature on the encoded bytes (decoding,
  the header checks, resizing, normalisation and the model, in one graph: what TF Serving runs).

Medians are reported, and the largest difference between the SavedModel's and the Keras
model's embeddings.

    python benchmarks/export_throughput.py --run benchmarks/runs/weakly-siamese-trunk \\
        --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402


def markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = [
        "### Exported SavedModel against the Keras model: embeddings per second",
        "",
        f"Command: `{report['command']}`  ",
        f"Run `{s['run']}` ({s['arch']}, {s['backbone']}, input {s['image_size']}); {s['batches']} batches of "
        f"{s['batch_size']} benchmark photos, the three ways alternated {s['repeats']} times, medians; "
        f"{report['machine']['cpus']} CPUs, TensorFlow {report['versions']['tensorflow']}; wall time "
        f"{report['wall_seconds']:.0f} s. Largest difference between the SavedModel's and the Keras model's "
        f"embeddings: {r['max_abs_difference']:.1e}.",
        "",
        "| path | input | embeddings/s | relative to `keras` |",
        "|---|---|---|---|",
    ]
    inputs = {"keras": "decoded, resized, normalised arrays", "keras+decode": "encoded bytes (pipeline functions)",
              "saved_model": "encoded bytes (one graph)"}
    for name in ("keras", "keras+decode", "saved_model"):
        lines.append(f"| `{name}` | {inputs[name]} | {r[name]:.1f} | {r[name] / r['keras']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--data", required=True, help="benchmark dataset (its first images are used)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "export_throughput"),
                        help="output path without extension: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.batches, args.repeats) < 1:
        parser.error("--batch-size, --batches and --repeats must be >= 1")

    import tensorflow as tf

    from visnet.data.pipeline import preprocess_bytes
    from visnet.data.readers import load_dataset
    from visnet.exporting import export_run
    from visnet.training.runs import Run

    began = time.perf_counter()
    run = Run(args.run)
    dataset = load_dataset(args.data, check="none", progress=False)
    paths = dataset.paths[: args.batch_size * args.batches]
    encoded = [open(p, "rb").read() for p in paths]
    batches = [encoded[i : i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]
    keras_model = run.model()
    spec = run.image_spec

    @tf.function
    def prepare(strings):
        return tf.map_fn(lambda s: preprocess_bytes(s, spec), strings, fn_output_signature=tf.float32)

    arrays = [prepare(tf.constant(b)).numpy() for b in batches]
    with tempfile.TemporaryDirectory() as folder:
        target = export_run(run, os.path.join(folder, "model"))
        signature = tf.saved_model.load(target).signatures["serving_default"]

        def keras_only():
            return [keras_model.predict_on_batch(a) for a in arrays]

        def keras_decode():
            return [keras_model.predict_on_batch(prepare(tf.constant(b))) for b in batches]

        def saved_model():
            return [signature(image_bytes=tf.constant(b))["embedding"].numpy() for b in batches]

        ways = {"keras": keras_only, "keras+decode": keras_decode, "saved_model": saved_model}
        outputs = {name: way() for name, way in ways.items()}  # warm-up (tracing), and the outputs compared
        difference = float(np.abs(np.concatenate(outputs["keras"]) - np.concatenate(outputs["saved_model"])).max())
        seconds = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                start = time.perf_counter()
                way()
                seconds[name].append(time.perf_counter() - start)
    rates = {name: len(encoded) / statistics.median(times) for name, times in seconds.items()}
    report = {
        **header("export_throughput", "benchmarks/export_throughput.py", argv if argv is not None else sys.argv[1:]),
        "settings": {"run": args.run, "arch": run.config.arch, "backbone": run.config.backbone,
                     "image_size": f"{spec.height}x{spec.width}", "batch_size": args.batch_size,
                     "batches": len(batches), "repeats": args.repeats, "images": len(encoded)},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "seconds": seconds,
        "results": {**{name: round(rate, 2) for name, rate in rates.items()}, "max_abs_difference": difference},
    }
    write_report(report, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
