"""MAML against prototypical networks on the novel classes: 5-way 1-shot and 5-shot accuracy.

Both train on the open-set protocol's base classes with the same trunk (conv-4 at 64x48) and
the same episodes (5-way, 1 support + 5 queries per class) for the same number of steps:
`--arch protonet` (nearest-prototype loss) and `--arch maml` (second-order unless
`--first-order`, `--inner-steps` inner steps). Then, on episodes of the 16 novel classes:

- protonet: nearest prototype on its embedding (600 episodes);
- MAML: its own few-shot rule, the head adapted on each episode's support set with
  `--test-inner-steps` gradient steps (`--maml-episodes` episodes), and, for reference,
  nearest prototype on its embedding.

    python benchmarks/maml_fewshot.py --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402


def train_run(arch: str, args, out: str, extra: dict) -> tuple:
    from visnet.training.config import TrainConfig
    from visnet.training.trainer import train

    config = TrainConfig(arch=arch, data=args.data, out=out, split="open-set", image_size=(64, 48),
                         backbone="conv4", p=5, k=6, shots=1, epochs=args.epochs, steps_per_epoch=args.steps,
                         lr=1e-3, augment=False, seed=0, **extra)
    begin = time.perf_counter()
    run = train(config, progress=False)
    return run, time.perf_counter() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps (meta-steps) per epoch")
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--test-inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--maml-episodes", type=int, default=200)
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "maml_fewshot"))
    args = parser.parse_args(argv)

    import shutil

    from visnet.data.pipeline import load_images, normalize_image
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.data.samplers import EpisodeSampler
    from visnet.evaluation.benchmark import embed_pool
    from visnet.evaluation.fewshot import evaluate_episodes
    from visnet.training.maml import MAML

    began = time.perf_counter()
    for name in ("protonet-fewshot", "maml-fewshot"):
        shutil.rmtree(os.path.join(args.runs_dir, name), ignore_errors=True)
    protonet, protonet_seconds = train_run("protonet", args, os.path.join(args.runs_dir, "protonet-fewshot"), {})
    loop = {"meta_batch": args.meta_batch, "inner_steps": args.inner_steps, "inner_lr": args.inner_lr,
            "first_order": args.first_order}
    maml_run, maml_seconds = train_run("maml", args, os.path.join(args.runs_dir, "maml-fewshot"),
                                       {"arch_options": loop})
    dataset = load_dataset(args.data, check="none", progress=False)
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    rows = {}
    for name, run in (("protonet", protonet), ("maml", maml_run)):
        x, y = embed_pool(run.embedder(), dataset, protocol, progress=False)
        for shots in (1, 5):
            rows[f"{name} prototype {shots}"] = evaluate_episodes(x, y, 5, shots, 15, 600, 0, "prototype").to_dict()

    # MAML's own rule: adapt the whole network on each episode's support set.
    import keras

    classifier = keras.models.load_model(maml_run.checkpoint("best"), compile=False)
    spec = maml_run.image_spec
    ids = [i for pool in protocol.novel_pool.values() for i in pool]
    pool = dataset.select([i for i in ids if i in set(dataset.ids)], "novel pool")
    images, kept = load_images(pool.paths, spec)
    images = np.asarray(normalize_image(images.astype("float32"), spec.normalization))
    labels = np.array(pool.labels)[kept]
    learner = MAML(classifier, 5, args.test_inner_steps, args.inner_lr, 1e-3, args.first_order)
    for shots in (1, 5):
        sampler = EpisodeSampler(labels, 5, shots, 15, args.maml_episodes, seed=0)
        accuracies = np.array([learner.evaluate_episode(images[e.support], e.support_labels, images[e.query],
                                                        e.query_labels) for e in sampler])
        rows[f"maml adapted {shots}"] = {"accuracy": float(accuracies.mean()), "episodes": len(accuracies),
                                         "ci95": float(1.96 * accuracies.std(ddof=1) / np.sqrt(len(accuracies)))}
    report = {
        **header("maml_fewshot", "benchmarks/maml_fewshot.py", argv if argv is not None else sys.argv[1:]),
        "settings": {**vars(args), "trunk": "conv4", "image_size": "64x48", "episodes": "5-way, 1 support + 5 queries"},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "training_seconds": {"protonet": round(protonet_seconds, 1), "maml": round(maml_seconds, 1)},
        "rows": rows,
    }
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    s, r, t = report["settings"], report["rows"], report["training_seconds"]
    order = "first-order" if s["first_order"] else "second-order"

    def cell(key):
        row = r[key]
        return f"{100 * row['accuracy']:.1f} ± {100 * row['ci95']:.1f}% ({row['episodes']} episodes)"

    return "\n".join([
        "### MAML against prototypical networks (16 novel classes)",
        "",
        f"Command: `{report['command']}`  ",
        f"Both: conv-4 at 64x48 from scratch, trained on the base classes with 5-way episodes (1 support + 5 "
        f"queries per class), {s['epochs']} epochs x {s['steps']} steps; MAML {order}, meta-batch {s['meta_batch']}, "
        f"{s['inner_steps']} inner step(s) of lr {s['inner_lr']} in training, {s['test_inner_steps']} at test. "
        f"Training {t['protonet'] / 60:.1f} min (protonet) and {t['maml'] / 60:.1f} min (MAML); wall time "
        f"{report['wall_seconds'] / 60:.0f} min on {report['machine']['cpus']} CPUs.",
        "",
        "| model | few-shot rule | 5-way 1-shot | 5-way 5-shot |",
        "|---|---|---|---|",
        f"| protonet | nearest prototype | {cell('protonet prototype 1')} | {cell('protonet prototype 5')} |",
        f"| MAML | head and trunk adapted on the support set | {cell('maml adapted 1')} | {cell('maml adapted 5')} |",
        f"| MAML | nearest prototype on its embedding | {cell('maml prototype 1')} | {cell('maml prototype 5')} |",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
