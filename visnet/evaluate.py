"""Measure an embedder on a benchmark protocol.

    python -m visnet.evaluate --embedder hog --data ../shared/data/fashion-products

prints closed-set k-NN accuracy, open-set mAP and Recall@K, and the N-way K-shot table of the
protocol in the data folder's `protocol.json` (or of one made for the data with
`visnet.data.protocol.make_protocol` when there is none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from visnet.cli import (
    add_imagenet_classes,
    expansion,
    imagenet_classes,
    int_list,
    key_value,
    name_list,
    report_error,
)
from visnet.data.image_spec import parse_size
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    from visnet.baselines import embedders
    from visnet.evaluation.distances import METRICS
    from visnet.evaluation.fewshot import classifiers

    parser = argparse.ArgumentParser(
        prog="python -m visnet.evaluate",
        description="Embed a dataset's protocol images and print closed-set accuracy, open-set "
        "retrieval (mAP, Recall@K) and the N-way K-shot table.",
    )
    parser.add_argument("--data", required=True,
                        help="dataset as LAYOUT:PATH or a path whose layout is detected "
                        "(benchmark, kaggle, inshop, street2shop, folder, csv)")
    parser.add_argument("--embedder", default="hog", help=f"embedder: {', '.join(embedders.names())} (default hog)")
    parser.add_argument("--run", action="append", metavar="RUN",
                        help="a run directory of visnet.train: its best model is the embedder (instead of "
                        "--embedder); given twice or more, the runs as one model, their embeddings side by side "
                        "(visnet.training.runs.RunEnsemble)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of --run (default best)")
    parser.add_argument("--hog-weight", type=float, metavar="W",
                        help="with --run: add a HOG pathway to the trained embedding, with this share (0-1) of the "
                             "squared distance (visnet.models.with_hog)")
    add_imagenet_classes(parser)
    parser.add_argument("--embedder-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="embedder constructor option, repeatable (e.g. cell=8, grey=true)")
    parser.add_argument("--protocol", help="protocol JSON (default: the data folder's protocol.json, "
                        "else one is made for the data)")
    parser.add_argument("--label", help="label column for the reader (default: the protocol's or the reader's)")
    parser.add_argument("--image-size", type=parse_size, metavar="HxW",
                        help="image size (default: the protocol's image_size_hw for hog, the embedder's own "
                        "default otherwise: 32x24 for pixels; with --run, the run's: another size runs the trained "
                        "model rebuilt at that size)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default euclidean)")
    parser.add_argument("--recall-ks", type=int_list, default=(1, 5, 10, 20, 30, 40, 50), metavar="K,K",
                        help="Recall@K cut-offs (default 1,5,10,20,30,40,50)")
    parser.add_argument("--knn", type=int_list, default=(1, 5), metavar="K,K",
                        help="k of the closed-set k-NN classifier (default 1,5)")
    parser.add_argument("--gallery-smoothing", type=smoothing, default=0, metavar="K|auto",
                        help="before closed-set k-NN, replace each training photo by the mean of itself and its K "
                             "nearest training photos of the same label (default 0: off); auto: K chosen on the "
                             "photos the --run (a closed-set run trained with --val images:F) held out of its training")
    parser.add_argument("--ways", type=int_list, metavar="N,N", help="few-shot ways (default: the protocol's)")
    parser.add_argument("--shots", type=int_list, metavar="K,K", help="few-shot shots (default: the protocol's)")
    parser.add_argument("--queries", type=int, help="query images per class and episode (default: the protocol's)")
    parser.add_argument("--episodes", type=int, help="episodes per task (default: the protocol's)")
    parser.add_argument("--seed", type=int, help="episode seed (default: the protocol's)")
    parser.add_argument("--classifiers", type=name_list, default=("prototype",), metavar="NAME,NAME",
                        help=f"few-shot classifiers: {', '.join(classifiers.names())} (default prototype)")
    parser.add_argument("--expansion", type=expansion, default="none", metavar="qe=K,dba=K,alpha=A",
                        help="re-rank open-set retrieval: each query plus its K nearest support images (qe), each "
                             "support image averaged with its K nearest (dba), weights cos**A (default none; the "
                             "vectors are L2-normalised first)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode",
                        help="how image files are checked before use (default decode: every pixel)")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _validate(args: argparse.Namespace) -> None:
    from visnet.evaluation.fewshot import classifiers

    for name in args.classifiers:
        classifiers.lookup(name)
    for flag in ("queries", "episodes", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1. Received: {value}")
    if args.ways and min(args.ways) < 2:
        raise ValueError(f"--ways must be >= 2 (a 1-way task has nothing to tell apart). Received: {args.ways}")
    if args.hog_weight is not None and not args.run:
        raise ValueError("--hog-weight applies to --run (a trained embedding); for HOG alone use --embedder hog.")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be >= 0. Received: {args.seed}")
    if args.gallery_smoothing != "auto" and args.gallery_smoothing < 0:
        raise ValueError(f"--gallery-smoothing must be >= 0. Received: {args.gallery_smoothing}")
    if args.gallery_smoothing == "auto" and not args.run:
        raise ValueError("--gallery-smoothing auto chooses K on the photos a closed-set run held out of its "
                         "training: give --run (or a number K).")
    for flag in ("out", "protocol"):
        value = getattr(args, flag)
        if value and os.path.isdir(value):
            raise ValueError(f"--{flag} must be a file, not a directory. Received: {value}")


def smoothing(text: str) -> int | str:
    """`--gallery-smoothing`: an integer K (checked >= 0 with the other flags), or `auto`."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer K >= 0 or auto, got {text!r}") from None


def training_overlap(run, data_path: str) -> list[str]:
    """What a run saw in training of the data it is evaluated on (figures to read with care)."""
    from visnet.data.readers import parse_spec

    trained_on = os.path.realpath(parse_spec(run.config.data)[1])
    if trained_on != os.path.realpath(data_path):
        return []
    if run.config.split == "open-set":
        return ["the run trained on the protocol's base classes, closed-set test images of those classes "
                "included: its closed-set accuracy is not a held-out figure (its open-set figures are)"]
    return [f"the run trained on split={run.config.split!r} of this data, so the protocol's novel classes or "
            "test images were training images: these figures are not held-out measures"]


def make_embedder(args: argparse.Namespace, run_path: str | list[str] | None, protocol=None):
    """The embedder of `run_path` (a trained run; a list of two or more: the runs as one model,
    `RunEnsemble`) or of `--embedder`; returns (embedder, notes)."""
    from visnet.baselines import embedders

    imagenet = imagenet_classes(args)
    if imagenet is not None and not run_path:
        raise ValueError("--imagenet-share applies to --run (a trained embedding); for the trunk off the shelf use "
                         "--embedder pretrained.")
    if run_path:
        from visnet.data.readers import parse_spec
        from visnet.training.runs import open_run

        if args.embedder_option:
            raise ValueError("--embedder-option does not apply to --run (the run fixes its embedder).")
        run = open_run(run_path)
        data_path = parse_spec(args.data)[1]
        notes = [note for member in getattr(run, "runs", [run]) for note in training_overlap(member, data_path)]
        return (run.embedder(args.checkpoint, getattr(args, "hog_weight", None), args.image_size, imagenet),
                list(dict.fromkeys(notes)))
    options = dict(args.embedder_option)
    if args.image_size:
        options["image_size"] = args.image_size
    elif protocol and protocol.image_size_hw and getattr(embedders.lookup(args.embedder), "follows_data_size", False):
        options.setdefault("image_size", protocol.image_size_hw)
    notes = []
    weights = options.get("weights")
    if isinstance(weights, str) and weights.startswith("run:"):  # a trained run's trunk: same overlap as the run
        from visnet.data.readers import parse_spec
        from visnet.training.runs import Run

        notes = training_overlap(Run(weights[len("run:"):]), parse_spec(args.data)[1])
    return embedders.get(args.embedder, **options), notes


def load_protocol(args: argparse.Namespace):
    """The protocol of `--protocol` or the data folder's protocol.json (None when there is none)."""
    from visnet.data.protocol import Protocol, find_protocol
    from visnet.data.readers import parse_spec

    protocol_path = args.protocol or find_protocol(parse_spec(args.data)[1])
    return Protocol.load(protocol_path) if protocol_path else None


def load_data(args: argparse.Namespace, protocol):
    """The dataset, and the protocol (one made for the data, seed 0, when there is none)."""
    from visnet.data.protocol import EpisodeSettings, make_protocol
    from visnet.data.readers import load_dataset, parse_spec

    layout, path = parse_spec(args.data)
    reader_options = {"check": args.check_images, "progress": not args.no_progress}
    if args.label:
        reader_options["label"] = args.label
    dataset = load_dataset(f"{layout}:{path}", **reader_options)
    print(dataset.summary(), file=sys.stderr)
    if protocol is None:
        episodes = EpisodeSettings(ways=args.ways or (5,), shots=args.shots or (1, 5),
                                   queries_per_class=args.queries or 15, count=args.episodes or 600,
                                   seed=args.seed or 0)
        protocol = make_protocol(dataset, name=f"generated for {args.data}", label=args.label or "label",
                                 episodes=episodes)
        print(f"no protocol.json: made one with seed 0 ({len(protocol.novel_classes)} novel classes "
              "held out; --ways/--shots/--queries size it)", file=sys.stderr)
    return dataset, protocol


def run(args: argparse.Namespace) -> dict:
    from visnet.evaluation.benchmark import BenchmarkSettings, format_results, run_benchmark
    from visnet.training.runs import held_out_ids

    _validate(args)
    protocol = load_protocol(args)
    held_out = held_out_ids(args.run) if args.gallery_smoothing == "auto" else frozenset()
    # Build the embedder before reading (and checking) every image, so a bad option fails fast.
    embedder, notes = make_embedder(args, args.run, protocol)
    dataset, protocol = load_data(args, protocol)
    settings = BenchmarkSettings(
        recall_ks=args.recall_ks, knn_ks=args.knn, ways=args.ways, shots=args.shots, queries=args.queries,
        episodes=args.episodes, seed=args.seed, classifiers=args.classifiers, metric=args.metric,
        batch_size=args.batch_size, expansion=args.expansion, gallery_smoothing=args.gallery_smoothing,
        held_out=held_out,
    )
    start = time.perf_counter()
    results = run_benchmark(embedder, dataset, protocol, settings, progress=not args.no_progress,
                            log=lambda m: print(m, file=sys.stderr))
    results["seconds"]["total"] = round(time.perf_counter() - start, 3)
    results["embedder"] = embedder.get_config()
    results["notes"] = notes
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    results["data"] = args.data
    print(f"\n{results['embedder']['name']} on {protocol.name} ({args.data})\n")
    print(format_results(results))
    seconds = results["seconds"]
    print(f"wall time {seconds['total']:.1f}s (embedding {seconds['embedding']:.1f}s, "
          f"few-shot {seconds['few_shot']:.1f}s)")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        print(f"results written to {args.out}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
