"""Export a trained run for TF Serving: `python -m visnet.export --run runs/x --out models/NAME [--version N]`.

Writes `models/NAME/<version>/` (a SavedModel whose `serving_default` signature takes encoded
image bytes and returns L2-normalised embeddings; weak-label runs add `tags` and `text_query`),
TF Serving's warm-up requests, and `models.config` and `batching_parameters.txt` beside it.
See `visnet.exporting` for the signatures and how a bad image in a batch is reported.
"""

from __future__ import annotations

import argparse
import sys

from visnet.cli import add_imagenet_classes, imagenet_classes, report_error, size
from visnet.exporting import MAX_PIXELS, TAGS_K


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visnet.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, action="append", metavar="RUN",
                        help="run directory written by visnet.train; given twice or more, the runs are exported as "
                             "one model, their embeddings side by side (visnet.training.runs.RunEnsemble)")
    parser.add_argument("--out", required=True, help="the model's base path, models/NAME (NAME is the served name)")
    parser.add_argument("--version", type=int,
                        help="version number (a folder under --out; default: one more than the highest there)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which model (default best)")
    parser.add_argument("--image-size", type=size, metavar="HxW",
                        help="serve the model at this input size (default: the run's; a model trained on random "
                             "crops often ranks better a little above its training size, README)")
    add_imagenet_classes(parser)
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"largest image (width x height) the served model decodes; larger ones are flagged "
                             f"invalid (default {MAX_PIXELS:,})")
    parser.add_argument("--tags-k", type=int, default=TAGS_K,
                        help=f"words returned by the tags signature of a weak-label run (default {TAGS_K})")
    parser.add_argument("--overwrite", action="store_true", help="replace the version if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from visnet.exporting import export_run, read_metadata
        from visnet.training.runs import open_run

        target = export_run(open_run(args.run), args.out, version=args.version, which=args.checkpoint,
                            max_pixels=args.max_pixels, tags_k=args.tags_k, overwrite=args.overwrite,
                            image_size=args.image_size, imagenet=imagenet_classes(args))
        metadata = read_metadata(target)
    except (ValueError, TypeError, OSError, KeyError) as error:
        return report_error(error)
    print(f"exported {metadata['arch']} run {', '.join(args.run)} ({metadata['checkpoint']} checkpoint) to {target}")
    print(f"signatures: {', '.join(metadata['signatures'])}; embedding dimension {metadata['embedding_dim']}")
    print(f"serve it: tensorflow_model_server --port=8500 --rest_api_port=8501 "
          f"--model_config_file={args.out}/models.config --enable_batching "
          f"--batching_parameters_file={args.out}/batching_parameters.txt")
    print(f"or, without TF Serving: python -m serving.grpc_server --model-base-path {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
