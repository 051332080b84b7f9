"""Learned embeddings against HOG on the open-set protocol of fashion-products.

Trains each architecture on the protocol's 98 base classes only (a validation set of base
classes held out for checkpoint selection; the 16 novel classes are never seen), then measures
the best checkpoint on the novel classes exactly as `python -m visnet.evaluate --run` does:
open-set mAP and Recall@K, N-way K-shot accuracy, and closed-set k-NN accuracy. Writes
`results/metric_learning.json` and `.md`, with each run's settings, its equivalent
`python -m visnet.train` command and its wall time.

    python benchmarks/metric_learning.py --data ../shared/data/fashion-products --archs siamese,visnet,capsule

Finished runs in --runs-dir are reused, unfinished ones resumed (--retrain starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import machine  # noqa: E402
from visnet.training.config import TrainConfig  # noqa: E402

# The recipe of each architecture: what the README reports. All train from scratch (no
# pretrained weights can be downloaded here) with the normalised-softmax loss on class-balanced
# P x K batches, which beat semi-hard and batch-hard triplet training in our runs (see the README).
COMMON = dict(split="open-set", val="classes:0.1", image_size=(128, 96), loss="normsoftmax", scale=16.0,
              p=32, k=4, optimizer="adam", lr=1e-3, schedule="cosine", warmup_epochs=1.0, seed=0,
              augmentation={"grey": 0.5})
RECIPES = {
    "siamese": dict(arch="siamese", backbone="resnet18", backbone_options={"width": 64}, embedding_dim=128,
                    epochs=14),
    "visnet": dict(arch="visnet", backbone="resnet18", backbone_options={"width": 32}, embedding_dim=128,
                   arch_options={"deep_dim": 512, "shallow_filters": 48}, epochs=12),
    "capsule": dict(arch="capsule", embedding_dim=128, arch_options={"features": "rc", "filters": [32, 64, 128]},
                    epochs=12),
    "hybrid": dict(arch="hybrid", backbone="resnet18", backbone_options={"width": 64}, embedding_dim=128,
                   arch_options={"hog_weight": 0.8}, epochs=12),
    # No training of its own: the siamese run with a HOG pathway added (`evaluate --hog-weight`),
    # the weight chosen on the run's validation classes (base classes, never the novel ones).
    "siamese+hog": dict(from_run="siamese", hog_weights=(0.2, 0.35, 0.5, 0.65, 0.8, 0.9)),
    "protonet": dict(arch="protonet", backbone="conv4", backbone_options={"width": 64}, loss="prototypical",
                     scale=None, shots=2, p=16, k=6, epochs=30),
}


def command(config: TrainConfig) -> str:
    """The `python -m visnet.train` command line equivalent to `config`."""
    defaults = TrainConfig()
    words = ["python", "-m", "visnet.train"]
    flags = {"remove_top": "--remove-top-layers"}
    for field, value in config.to_dict().items():
        if field in ("data", "out"):  # given by the caller
            continue
        default = getattr(defaults, field)
        if field in ("image_size",):
            default = list(default)
        if value == default or value in (None, {}, []):
            continue
        flag = flags.get(field, "--" + field.replace("_", "-"))
        if field in ("backbone_options", "arch_options", "augmentation"):
            name = {"backbone_options": "--backbone-option", "arch_options": "--arch-option",
                    "augmentation": "--augment-option"}[field]
            for key, item in value.items():
                words += [name, f"{key}={json.dumps(item, separators=(',', ':'))}"]
        elif field == "image_size":
            words += [flag, f"{value[0]}x{value[1]}"]
        elif field == "phases":
            for phase in value:
                words += ["--phase", phase]
        elif field == "cache_images":
            words += ["--no-cache-images"]
        elif field == "augment":
            words += ["--no-augment"]
        elif isinstance(value, bool):
            words += [flag]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--archs", default="siamese,visnet,capsule", help="comma-separated (default siamese,visnet,capsule)")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="where the runs go")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (for a quick check)")
    parser.add_argument("--retrain", action="store_true", help="start finished or unfinished runs over")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.benchmark import BenchmarkSettings, run_benchmark
    from visnet.training.callbacks import load_state
    from visnet.training.trainer import train

    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    from visnet.training.runs import Run

    def trained(name: str):
        """The finished run of recipe `name` (trained, or resumed, when needed)."""
        settings = {**COMMON, **RECIPES[name]}
        if args.epochs:
            settings["epochs"] = args.epochs
        out = os.path.join(args.runs_dir, name)
        config = TrainConfig(data=args.data, out=out, **settings)
        if args.retrain and name not in retrained and os.path.exists(out):
            shutil.rmtree(out)
        retrained.add(name)
        state = load_state(out)
        if state is None or state["epochs_done"] < config.epochs:
            train(config, resume=state is not None, progress=False)
        return settings, config, load_state(out), Run(out)

    retrained: set[str] = set()
    rows = []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        if arch not in RECIPES:
            parser.error(f"no recipe for {arch!r}: choose from {', '.join(RECIPES)}")
        base = RECIPES[arch].get("from_run", arch)
        settings, config, state, run = trained(base)
        extra, hog_weight = {}, None
        if "hog_weights" in RECIPES[arch]:
            from visnet.training.data import read_training_data

            val = read_training_data(run.config, progress=False).val
            scores = {w: validation_map(run, val, w) for w in RECIPES[arch]["hog_weights"]}
            hog_weight = max(scores, key=scores.get)
            extra = {"from_run": base, "hog_weight": hog_weight,
                     "validation_mAP_by_hog_weight": {str(w): round(v, 4) for w, v in scores.items()}}
            print(f"{arch}: validation mAP by HOG weight {extra['validation_mAP_by_hog_weight']}", file=sys.stderr)
        start = time.perf_counter()
        results = run_benchmark(run.embedder("best", hog_weight), dataset, protocol, BenchmarkSettings(),
                                progress=False)
        history = state["history"]
        rows.append({
            "arch": arch, "settings": settings, **extra,
            "command": command(config) + f" --data {args.data} --out runs/{base}",
            "train_seconds": round(sum(h.get("epoch_seconds", 0) for h in history), 1),
            "epochs": state["epochs_done"], "best_epoch": state["best_epoch"],
            "images_per_second": round(sum(h["images_per_second"] for h in history) / len(history), 1),
            "parameters": run.info["parameters"], "untrained_val_mAP": run.info.get("untrained", {}).get("val_mAP"),
            "best_val_mAP": state["best"], "eval_seconds": round(time.perf_counter() - start, 1), "results": results,
        })
        print(f"{arch}: mAP {results['open_set']['mAP']:.3f}", file=sys.stderr)

    hog_path = os.path.join(args.out_dir, "hog.json")
    hog = json.load(open(hog_path))["results"] if os.path.exists(hog_path) else None
    report = {"benchmark": "metric_learning", "data": args.data, "protocol": protocol.name,
              "command": f"python benchmarks/metric_learning.py --data {args.data} --archs {args.archs}",
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": rows, "hog": hog}
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "metric_learning.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.out_dir, "metric_learning.md"), "w") as handle:
        handle.write(markdown(report))
    print(markdown(report))
    return 0


def validation_map(run, val, hog_weight: float) -> float:
    """Retrieval mAP on the run's validation classes (held-out base classes) with a HOG pathway."""
    from visnet.evaluation.embedding import embed_dataset
    from visnet.evaluation.retrieval import retrieval_metrics

    kept, vectors = embed_dataset(run.embedder("best", hog_weight), val, progress=False)
    return retrieval_metrics(vectors, kept.labels, vectors, kept.labels, ks=(1,), exclude_self=True).mean_average_precision


def _few(results: dict, ways: int, shots: int) -> str:
    for r in results["few_shot"]:
        if r["ways"] == ways and r["shots"] == shots and r["accuracy"] is not None:
            return f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}%"
    return "n/a"


def markdown(report: dict) -> str:
    lines = ["### Learned embeddings against HOG (open set: trained on base classes, measured on the 16 novel classes)",
             "", f"Command: `{report['command']}`", "",
             "| embedder | mAP | R@1 | R@5 | 5-way 1-shot | 5-way 5-shot | 16-way 1-shot | 16-way 5-shot | closed-set k=1* | training |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, r, training):
        o = r["open_set"]
        lines.append(f"| {name} | {o['mAP']:.3f} | {o['recall']['1']:.3f} | {o['recall']['5']:.3f} | "
                     f"{_few(r, 5, 1)} | {_few(r, 5, 5)} | {_few(r, 16, 1)} | {_few(r, 16, 5)} | "
                     f"{100 * r['closed_set']['knn_accuracy']['1']:.1f}% | {training} |")

    if report["hog"]:
        row("HOG (no training)", report["hog"], "–")
    for r in report["rows"]:
        if "from_run" in r:
            row(f"`{r['arch']}`", r["results"], f"the `{r['from_run']}` run + HOG pathway (weight {r['hog_weight']:g})")
        else:
            row(f"`{r['arch']}`", r["results"], f"{r['train_seconds'] / 60:.0f} min, {r['epochs']} epochs "
                f"({r['images_per_second']:.0f} img/s)")
    lines += ["", "\\* Closed-set k-NN with the open-set models: their training images include the closed-set "
              "test images of base classes, so this column is not a held-out figure for them (it is for HOG).", "",
              "Settings (each trains from scratch on 2 CPU cores):", ""]
    for r in report["rows"]:
        s = r["settings"]
        if "from_run" in r:
            tried = ", ".join(f"{w}: {v:.3f}" for w, v in r["validation_mAP_by_hog_weight"].items())
            lines.append(f"- `{r['arch']}`: the `{r['from_run']}` run's best checkpoint with a HOG pathway "
                         f"(`visnet.models.with_hog`); the weight is the one with the best mAP on the run's "
                         f"validation classes (base classes; weight: mAP = {tried}); "
                         f"`python -m visnet.evaluate --run runs/{r['from_run']} --hog-weight {r['hog_weight']:g} "
                         f"--data {report['data']}`")
            continue
        lines.append(f"- `{r['arch']}`: {s['image_size'][0]}x{s['image_size'][1]} input, "
                     f"{s.get('backbone') or 'own feature block'} trunk {s.get('backbone_options', '')}, "
                     f"{s['loss']} loss, P x K = {s['p']} x {s['k']}, {s['epochs']} epochs, "
                     f"{r['parameters']:,} parameters, best epoch {r['best_epoch']} by val_mAP; "
                     f"`{r['command']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
