"""Recognise new articles from a few labelled photos each: N-way K-shot on your own photos.

    python -m visnet.recognise --run runs/x --support new-articles/ photos/*.jpg
    python -m visnet.recognise --run runs/x --support new-articles/ --photos uploads/ \\
        --classifier soft-kmeans --out predictions.csv

`--support` holds the labelled photos, one folder per article (`new-articles/<article>/*.jpg`,
or any layout `visnet.evaluate --data` reads); the photos to recognise are the IMAGE arguments
and/or the image files of `--photos DIR`. Each photo gets the `--top-k` most likely articles
with the classifier's scores (for `prototype`, the softmax of minus the distances to each
article's mean embedding). `soft-kmeans` recognises the photos together (transductive): when
they arrive as a batch, it is the more accurate rule (README, "Few-shot grids"). Photos that
cannot be used (missing, not an image, too large) are skipped and counted; the others are still
recognised.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from visnet.cli import add_imagenet_classes, key_value, report_error
from visnet.data.image_spec import parse_size
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    from visnet.baselines import embedders
    from visnet.evaluation.distances import METRICS
    from visnet.evaluation.fewshot import classifiers

    parser = argparse.ArgumentParser(prog="python -m visnet.recognise", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="photos to recognise")
    parser.add_argument("--support", required=True,
                        help="the labelled photos: a folder per article, or LAYOUT:PATH as visnet.evaluate reads")
    parser.add_argument("--photos", metavar="DIR", help="also recognise every image file in DIR (not its sub-folders)")
    parser.add_argument("--run", help="a run directory written by visnet.train (the embedding)")
    parser.add_argument("--embedder", default="hog", help=f"without --run: {', '.join(embedders.names())} (default hog)")
    parser.add_argument("--embedder-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="embedder option, repeatable")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of --run")
    parser.add_argument("--image-size", type=parse_size, metavar="HxW", help="run the embedder at this input size")
    add_imagenet_classes(parser)
    parser.add_argument("--classifier", default="prototype",
                        help=f"classifier: {', '.join(classifiers.names())} (default prototype)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default euclidean)")
    parser.add_argument("--top-k", type=int, default=3, help="articles listed per photo (default 3)")
    parser.add_argument("--label", help="label column of the support layout (default: the reader's)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode", help="image check (default decode)")
    parser.add_argument("--out", help="also write the predictions to this CSV file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def photo_dataset(images: list[str], folder: str | None, check: str):
    """The photos to recognise as a dataset (label `?`): IMAGE paths, then `folder`'s image files
    in name order; unusable ones skipped and counted."""
    from visnet.data.readers.common import IMAGE_EXTENSIONS, finish, require_dir
    from visnet.data.records import Record, SkipReport

    report = SkipReport()
    paths = list(images)
    if folder:
        require_dir(folder, "--photos folder")
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or os.path.isdir(path):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                paths.append(path)
            else:
                report.add("not an image file name", path)
    if not paths:
        raise ValueError("No photos to recognise: give IMAGE arguments or --photos DIR.")
    return finish([Record(path=p, label="?", id=p) for p in paths], report, "photos", check=check)


def recognise(support_x, support_y, photos_x, classifier: str = "prototype", metric: str = "euclidean",
              top_k: int = 3) -> list[list[tuple[str, float]]]:
    """For each photo, its `top_k` (label, score) pairs, most likely first (ties: label order).

    Args:
        support_x, support_y: the labelled embeddings and their labels (at least two labels).
        photos_x: the embeddings to recognise, classified together (matters for transductive
            classifiers such as `soft-kmeans`).
        classifier: a name or config of `visnet.evaluation.fewshot.classifiers`.
    """
    from visnet.evaluation.fewshot import build_classifier

    labels = np.unique(np.asarray(support_y))
    if len(labels) < 2:
        raise ValueError(f"The support photos need at least two articles to tell apart. Received: {labels.tolist()}")
    model = build_classifier(classifier, metric).fit(np.asarray(support_x), np.asarray(support_y))
    scores = np.asarray(model.scores(np.asarray(photos_x)))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    return [[(str(model.classes_[j]), float(row[j])) for j in best] for row, best in zip(scores, order)]


def _write_csv(path: str, rows: list[list[str]]) -> None:
    """Written beside the target and renamed into place: an old file is never half-overwritten."""
    from visnet.files import replacing

    with replacing(path, ".csv") as partial, open(partial, "w", newline="") as out:
        csv.writer(out).writerows(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from visnet.evaluation.fewshot import classifiers

        if args.top_k < 1:
            raise ValueError(f"--top-k must be >= 1. Received: {args.top_k}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
        if args.out and os.path.isdir(args.out):
            raise ValueError(f"--out must be a file, not a directory. Received: {args.out}")
        classifiers.lookup(args.classifier)  # a bad name fails before any image is read
        from visnet.data.readers import load_dataset
        from visnet.evaluate import make_embedder
        from visnet.evaluation.embedding import embed_dataset

        args.data = args.support
        embedder, notes = make_embedder(args, args.run)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        photos = photo_dataset(args.images, args.photos, args.check_images)
        options = {"check": args.check_images, "progress": not args.no_progress}
        if args.label:
            options["label"] = args.label
        support = load_dataset(args.support, **options)
        print(support.summary(), file=sys.stderr)
        progress = not args.no_progress
        support, support_x = embed_dataset(embedder, support, batch_size=args.batch_size, progress=progress,
                                           description="support")
        photos, photos_x = embed_dataset(embedder, photos, batch_size=args.batch_size, progress=progress,
                                         description="photos")
        if not len(photos):
            raise ValueError(f"None of the photos could be read ({photos.report}).")
        results = recognise(support_x, support.labels, photos_x, args.classifier, args.metric, args.top_k)
    except (ValueError, TypeError, OSError, KeyError) as error:
        return report_error(error)
    rows = [["photo", *[f"{kind}_{i + 1}" for i in range(args.top_k) for kind in ("label", "score")]]]
    for path, top in zip(photos.paths, results):
        rows.append([path, *[v for label, score in top for v in (label, f"{score:.4f}")]])
        print(f"{path}\t" + "  ".join(f"{label} {score:.2f}" for label, score in top))
    if photos.report:
        print(photos.report, file=sys.stderr)
    if args.out:
        try:
            _write_csv(args.out, rows)
        except OSError as error:
            return report_error(error)
        print(f"wrote {len(results)} predictions to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
