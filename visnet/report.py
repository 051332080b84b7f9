"""Figures of a trained run on the novel classes, and one HTML page that shows them:
`python -m visnet.report --run runs/x --data PATH [--out runs/x/report]`.

Embeds the open-set protocol's novel-class images (support and queries) with the run's model
and with the same architecture untrained (same seed: where training started), then writes:

    precision_recall.png   retrieval precision-recall of every query-support pair, trained vs untrained
    distances.png          same-class and different-class pair distances, untrained and trained (report fig. 20)
    pca.png, tsne.png      2-D maps of the trained embeddings coloured by class (report figs. 31-32)
    training.png           training loss and validation metrics per epoch
    index.html             the figures and the numbers behind them; report.json the numbers
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time

import numpy as np

from visnet.cli import report_error
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    from visnet.evaluation.distances import METRICS

    parser = argparse.ArgumentParser(prog="python -m visnet.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory written by visnet.train")
    parser.add_argument("--data", required=True, help="dataset as LAYOUT:PATH or a path (layout detected)")
    parser.add_argument("--out", help="output folder (default RUN/report)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which model (default best)")
    parser.add_argument("--protocol", help="protocol JSON (default: the data folder's protocol.json)")
    parser.add_argument("--label", help="label column for the reader")
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default euclidean)")
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seeds t-SNE (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode", help="image check (default decode)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def untrained_embedder(run):
    """The run's architecture with fresh weights from the run's seed: the model before training."""
    import keras

    from visnet.models.common import embedding_model
    from visnet.training.runs import RunEmbedder
    from visnet.training.trainer import build_model, resolve_loss

    keras.utils.set_random_seed(run.config.seed)
    model = embedding_model(build_model(run.config, resolve_loss(run.config)))
    return RunEmbedder(model, run.image_spec, "untrained")


def novel_images(embedder, dataset, protocol, batch_size: int, progress: bool):
    """(support x, support labels, query x, query labels) of the open-set protocol."""
    from visnet.evaluation.embedding import embed_dataset

    known = set(dataset.ids)
    out = []
    for ids in (protocol.support_ids, protocol.query_ids):
        subset = dataset.select([i for i in ids if i in known], "open-set images")
        embedded, vectors = embed_dataset(embedder, subset, None, batch_size, progress)
        out += [vectors, np.array([r.label for r in embedded])]
    return out


def page(run_path: str, summary: dict, figures: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    images = "".join(f"<figure><img src='{name}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
                     "</figcaption></figure>" for name, caption in figures)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>visnet report: "
            f"{html.escape(os.path.basename(os.path.normpath(run_path)))}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse}"
            "th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}figure{display:inline-block;"
            "margin:1rem 1rem 0 0;vertical-align:top}img{max-width:44rem;border:1px solid #eee}"
            "figcaption{color:#555;font-size:.9rem}</style></head><body>"
            f"<h1>visnet report: {html.escape(run_path)}</h1><table>{rows}</table>{images}</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    try:
        if args.perplexity <= 0:
            raise ValueError(f"--perplexity must be > 0. Received: {args.perplexity}")
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        from visnet.evaluate import load_data, load_protocol
        from visnet.evaluation import plots
        from visnet.evaluation.retrieval import (
            pair_distances,
            precision_recall_points,
            retrieval_metrics,
        )
        from visnet.training.callbacks import load_state
        from visnet.training.runs import Run

        run = Run(args.run)
        trained = run.embedder(args.checkpoint)
        untrained = untrained_embedder(run)
        for name in ("ways", "shots", "queries", "episodes"):
            setattr(args, name, None)
        dataset, protocol = load_data(args, load_protocol(args))
        if not protocol.support_ids or not protocol.query_ids:
            raise ValueError(f"The protocol {protocol.name!r} has no open-set support and query images to report on.")
        out = args.out or os.path.join(args.run, "report")
        os.makedirs(out, exist_ok=True)
        embedded = {name: novel_images(e, dataset, protocol, args.batch_size, not args.no_progress)
                    for name, e in (("untrained", untrained), ("trained", trained))}
        summary, curves, panels = {"run": args.run, "arch": run.config.arch, "data": args.data}, {}, {}
        for name, (support_x, support_y, query_x, query_y) in embedded.items():
            positive, negative = pair_distances(query_x, query_y, support_x, support_y, args.metric)
            precision, recall, ap = precision_recall_points(positive, negative)
            curves[name], panels[name] = (precision, recall, ap), (positive, negative)
            metrics = retrieval_metrics(query_x, query_y, support_x, support_y, (1, 5), args.metric)
            summary[f"{name} mAP"] = round(metrics.mean_average_precision, 4)
            summary[f"{name} R@1"] = round(metrics.recall[1], 4)
            summary[f"{name} pooled AP"] = round(ap, 4)
        support_x, support_y, query_x, query_y = embedded["trained"]
        points, labels = np.concatenate([support_x, query_x]), np.concatenate([support_y, query_y])
        summary.update(images=len(labels), classes=len(set(labels.tolist())))
        figures = [
            (plots.precision_recall(curves, os.path.join(out, "precision_recall.png"),
                                    "retrieval of the novel classes (every query-support pair)"),
             "Precision-recall of novel-class retrieval, before and after training"),
            (plots.distance_histograms(panels, os.path.join(out, "distances.png"),
                                       "pair distances on the novel classes"),
             "Same-class and different-class pair distances, before and after training"),
            (plots.embedding_map(PCA(2, random_state=args.seed).fit_transform(points), labels,
                                 os.path.join(out, "pca.png"), "PCA of the trained embeddings"),
             "PCA map of the novel-class embeddings"),
            (plots.embedding_map(TSNE(2, perplexity=min(args.perplexity, (len(points) - 1) / 3), init="pca",
                                      random_state=args.seed).fit_transform(points), labels,
                                 os.path.join(out, "tsne.png"), "t-SNE of the trained embeddings"),
             "t-SNE map of the novel-class embeddings"),
        ]
        history = (load_state(args.run) or {}).get("history", [])
        if history:
            figures.append((plots.training_curves(history, os.path.join(out, "training.png"),
                                                  f"{run.config.arch} training"),
                            "Training loss and validation metrics per epoch"))
        figures = [(os.path.basename(path), caption) for path, caption in figures]
        with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as handle:
            handle.write(page(args.run, summary, figures))
        summary["seconds"] = round(time.perf_counter() - began, 1)
        with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as handle:
            json.dump({**summary, "figures": [name for name, _ in figures]}, handle, indent=2)
    except (ValueError, TypeError, OSError, KeyError) as error:
        return report_error(error)
    print(f"untrained mAP {summary['untrained mAP']:.3f} -> trained {summary['trained mAP']:.3f} on "
          f"{summary['classes']} novel classes; {len(figures)} figures and index.html in {out} "
          f"({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
