"""What the input pipeline costs: training images/s through visnet's real pipeline against a bare
`model.fit` on in-memory tensors, same model, same batches, measured in one run.

For each architecture (the recipes of `metric_learning.py`): the base-class images of the
benchmark are decoded into memory, then the same compiled model trains for `--steps` batches
(a) from `sampled_dataset` (P x K sampler, batch augmentation, normalisation, prefetch), and
(b) from NumPy arrays of already normalised images (no sampler, no augmentation), both with
`train_on_batch` on the same compiled model. Each is warmed up first; (a) and (b) alternate
`--repeats` times and the medians are reported.

    python benchmarks/training_throughput.py --data ../shared/data/fashion-products --archs siamese,visnet,capsule
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import machine  # noqa: E402


def measure(arch: str, args: argparse.Namespace) -> dict:
    """Pipeline and bare-fit throughput of one architecture's recipe."""
    import keras

    from benchmarks.metric_learning import COMMON, RECIPES
    from visnet.data.augment import Augmentation
    from visnet.data.pipeline import load_images, normalize_image, sampled_dataset
    from visnet.training.config import TrainConfig
    from visnet.training.data import image_spec, make_sampler, read_training_data
    from visnet.training.trainer import (
        build_model,
        compile_training_model,
        input_normalization,
        resolve_loss,
        training_targets,
    )

    config = TrainConfig(data=args.data, out="", **{**COMMON, **RECIPES[arch], "val": "none"})
    loss_config = resolve_loss(config)
    data = read_training_data(config, progress=False)
    spec = image_spec(config, input_normalization(config))
    images, kept = load_images(data.train.paths, image_spec(config, "none"))
    labels = data.train.label_ids(data.classes)[kept]
    sampler = make_sampler(config, loss_config, labels, 0)
    batch = int(sampler.epoch(0).shape[1])
    keras.utils.set_random_seed(0)
    model = compile_training_model(build_model(config, loss_config), config, loss_config, len(data.classes),
                                   args.steps)
    proxies = loss_config["name"] == "normsoftmax"
    ds = sampled_dataset(None, labels, sampler, spec, augment=Augmentation(), images=images)
    ds = ds.map(lambda b: (b["image"], training_targets(b["label"], proxies)))
    order = sampler.epoch(0).reshape(-1)[: args.steps * batch]
    x = np.asarray(normalize_image(images[order].astype(np.float32), spec.normalization))
    y = training_targets(labels[order], proxies)

    # Steady state: one long-lived iterator over the real pipeline against slices of in-memory
    # arrays, both through `train_on_batch` (no per-call `fit` set-up in either measurement).
    stream = iter(ds)

    def pipeline():
        for _ in range(args.steps):
            images_batch, targets = next(stream)
            model.train_on_batch(images_batch, targets)

    def bare():
        for i in range(args.steps):
            part = slice(i * batch, (i + 1) * batch)
            targets = {k: v[part] for k, v in y.items()} if isinstance(y, dict) else y[part]
            model.train_on_batch(x[part], targets)

    pipeline(), bare()  # warm-up: tracing and first allocations
    times = {"pipeline": [], "bare": []}
    for _ in range(args.repeats):
        for name, fn in (("pipeline", pipeline), ("bare", bare)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    images_seen = args.steps * batch
    pipe = images_seen / statistics.median(times["pipeline"])
    plain = images_seen / statistics.median(times["bare"])
    row = {"arch": arch, "batch": batch, "image_size": list(config.image_size),
                 "pipeline_images_per_second": round(pipe, 1), "bare_images_per_second": round(plain, 1),
                 "pipeline_cost": round(1 - pipe / plain, 4),
                 "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()}}
    print(f"{arch}: pipeline {pipe:.0f} img/s, in-memory {plain:.0f} img/s, cost {100 * (1 - pipe / plain):.1f}%",
          file=sys.stderr)
    keras.backend.clear_session()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--archs", default="siamese,visnet,capsule", help="comma-separated recipes")
    parser.add_argument("--steps", type=int, default=15, help="batches per timed pass (default 15)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each kind (default 3)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    rows = []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        rows.append(measure(arch, args))

    report = {"benchmark": "training_throughput", "data": args.data, "steps": args.steps, "repeats": args.repeats,
              "command": f"python benchmarks/training_throughput.py --data {args.data} --archs {args.archs} --steps {args.steps}",
              "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "machine": machine(), "rows": rows}
    lines = ["### Training throughput: the input pipeline against in-memory tensors", "",
             f"Command: `{report['command']}` (medians of {args.repeats} passes of {args.steps} batches, "
             f"{os.cpu_count()} CPUs)", "",
             "| architecture | input | batch | pipeline (sampler + augmentation) | in-memory tensors | pipeline cost |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['arch']}` | {r['image_size'][0]}x{r['image_size'][1]} | {r['batch']} | "
                     f"{r['pipeline_images_per_second']:.0f} img/s | {r['bare_images_per_second']:.0f} img/s | "
                     f"{100 * r['pipeline_cost']:.1f}% |")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "training_throughput.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.out_dir, "training_throughput.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
