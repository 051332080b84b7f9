"""Embed a dataset with a trained run: `python -m visnet.embed --run runs/x --data PATH --out emb.npz`
(`--run` twice or more: the runs as one model).

The `.npz` holds `embeddings` (n, d) float32, and `labels`, `ids`, `paths` (n,) strings, in the
order of the dataset's readable records.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from visnet.cli import add_imagenet_classes, imagenet_classes, report_error, size
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visnet.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, action="append", metavar="RUN",
                        help="run directory written by visnet.train; given twice or more, the runs as one model, "
                             "their embeddings side by side (visnet.training.runs.RunEnsemble)")
    parser.add_argument("--data", required=True, help="dataset as LAYOUT:PATH or a path (layout detected)")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--label", help="label column (default: the reader's)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which model (default best)")
    parser.add_argument("--hog-weight", type=float, metavar="W",
                        help="add a HOG pathway to the trained embedding, with this share (0-1) of the squared "
                             "distance (visnet.models.with_hog)")
    parser.add_argument("--image-size", type=size, metavar="HxW",
                        help="run the model at this input size (default: the run's; see visnet.evaluate)")
    add_imagenet_classes(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode", help="image check (default decode)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
        if os.path.isdir(args.out):
            raise ValueError(f"--out must be a file, not a directory. Received: {args.out}")
        from visnet.data.readers import load_dataset
        from visnet.evaluation.embedding import embed_dataset
        from visnet.training.runs import open_run

        embedder = open_run(args.run).embedder(args.checkpoint, args.hog_weight, args.image_size,
                                                   imagenet_classes(args))
        options = {"check": args.check_images, "progress": not args.no_progress}
        if args.label:
            options["label"] = args.label
        dataset = load_dataset(args.data, **options)
        print(dataset.summary(), file=sys.stderr)
        kept, vectors = embed_dataset(embedder, dataset, batch_size=args.batch_size, progress=not args.no_progress)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        np.savez(args.out, embeddings=vectors, labels=np.array(kept.labels), ids=np.array(kept.ids),
                 paths=np.array(kept.paths))
    except (ValueError, TypeError, OSError, KeyError) as error:
        return report_error(error)
    print(f"{len(vectors)} embeddings of dimension {vectors.shape[1]} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
