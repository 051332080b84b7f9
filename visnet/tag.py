"""Tag images with words, find nearest words, or rank images by a text query, with a `weakly` run.

    python -m visnet.tag --run runs/weakly photo1.jpg photo2.jpg           # top-5 words per image
    python -m visnet.tag --run runs/weakly --query "navy striped shirt" photos/*.jpg
    python -m visnet.tag --run runs/weakly --neighbours navy
    python -m visnet.tag --probe probes/lite0 photo1.jpg          # a word probe's tags (visnet.word_probe)
"""

from __future__ import annotations

import argparse
import sys

from visnet.cli import closed_output, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visnet.tag", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory of a --arch weakly training")
    source.add_argument("--probe", help="directory of a word probe (python -m visnet.word_probe): tags and text "
                                        "search that hold on kinds of product it never saw")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of --run (default best)")
    parser.add_argument("--top-k", type=int, default=5, help="words per image, or neighbours (default 5)")
    parser.add_argument("--no-prior", action="store_true",
                        help="rank tags by image-word similarity alone, without the words' catalogue frequency")
    parser.add_argument("--query", help="rank the IMAGEs by this text (summed scores of its words; with a --probe on "
                                         "an ImageNet trunk, also of the ImageNet classes its words name)")
    parser.add_argument("--neighbours", metavar="WORD", help="print the words nearest WORD (no images needed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1. Received: {args.top_k}")
    if not args.images and not args.neighbours:
        parser.error("give IMAGE files to tag or rank, or --neighbours WORD")
    if args.probe and (args.neighbours or args.no_prior):
        parser.error("--neighbours and --no-prior need a --run (a word probe has neither word vectors nor a prior)")
    try:
        if args.probe:
            from visnet.word_probe import WordProbe

            words = WordProbe.load(args.probe)
        else:
            from visnet.training.runs import Run

            words = Run(args.run).word_model(args.checkpoint)
        if args.neighbours:
            for word, similarity in words.neighbours(args.neighbours, args.top_k):
                print(f"{word}\t{similarity:.3f}")
        if not args.images:
            return 0
        if args.query:  # a query without known words fails before any image is read
            words.check_query(args.query) if args.probe else words.query_ids(args.query)
        import numpy as np

        from visnet.data.pipeline import load_images, normalize_image

        pixels, kept = load_images(args.images, words.image_spec)
        for i in sorted(set(range(len(args.images))) - set(kept.tolist())):
            print(f"skipped {args.images[i]}: not a readable image", file=sys.stderr)
        if not len(kept):
            print("error: none of the images could be read", file=sys.stderr)
            return 1
        images = np.asarray(normalize_image(pixels.astype(np.float32), words.image_spec.normalization))
        outputs = words.scores(images) if args.probe else {"words": words.embed(images)}
        vectors = outputs["words"]
        paths = [args.images[i] for i in kept]
        if args.query:
            extra = {"imagenet": outputs["imagenet"]} if "imagenet" in outputs else {}
            scores = words.text_scores(args.query, vectors, **extra)
            for rank, j in enumerate(np.argsort(-scores, kind="stable"), 1):
                print(f"{rank}\t{scores[j]:.3f}\t{paths[j]}")
        else:
            options = {} if args.probe else {"prior": not args.no_prior}
            for path, tags in zip(paths, words.tag(vectors, args.top_k, **options)):
                print(path + "\t" + "  ".join(f"{w} ({p:.2f})" for w, p in tags))
        sys.stdout.flush()  # a closed output shows here, not at exit
    except BrokenPipeError:
        return closed_output()
    except (ValueError, OSError, KeyError) as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
