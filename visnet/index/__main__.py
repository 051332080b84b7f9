"""Build a searchable gallery from a dataset with an exported model:
`python -m visnet.index build --model models/NAME --data PATH --out index/ [--backend balltree]`.

Embeds every readable image through the export's `serving_default` signature (the same graph
TF Serving runs), stores the vectors in the chosen index and the records (id, image path,
label, text, other columns) in the SQLite catalogue, and saves both atomically to `--out`,
stamped with the model's name and version so the search API refuses a mismatched index.
With `--backend milvus` the vectors go to a Milvus collection (Milvus Lite in `OUT/milvus.db`, or
a server with `--uri http://host:19530`) and the directory holds the catalogue and the manifest.
`python -m visnet.index info --index index/` prints what a saved gallery holds.
"""

from __future__ import annotations

import argparse
import sys
import time

from visnet.cli import report_error
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visnet.index", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="embed a dataset and save a gallery")
    build.add_argument("--model", required=True, help="the export's base path, models/NAME (visnet.export)")
    build.add_argument("--data", required=True, help="dataset as LAYOUT:PATH or a path (layout detected)")
    build.add_argument("--out", required=True, help="gallery directory to write (replaced atomically if present)")
    build.add_argument("--backend", default="auto",
                       help="index: brute, balltree, faiss-hnsw, faiss-ivf, milvus (see --uri), or auto "
                            "(default): brute below 100,000 images, faiss-hnsw from there (see the README's "
                            "measurements)")
    build.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                       help="index option, e.g. leaf_size=20 or ef_search=64 (repeatable)")
    build.add_argument("--uri", help="milvus: a Milvus Lite file or a server URI such as http://host:19530 "
                                     "(default: OUT/milvus.db, Milvus Lite)")
    build.add_argument("--collection", help="milvus: the collection to fill (default visnet; it must be empty)")
    build.add_argument("--token", help="milvus: the server's token (default: $MILVUS_TOKEN)")
    build.add_argument("--label", help="label column (default: the reader's)")
    build.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    build.add_argument("--check-images", choices=CHECK_MODES, default="header",
                       help="image check when reading the dataset (default header; the model checks the rest)")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    info = commands.add_parser("info", help="describe a saved gallery")
    info.add_argument("--index", required=True, help="gallery directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    from visnet.cli import key_value

    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            from visnet.index import Gallery
            from visnet.index.storage import read_snapshot

            manifest, _ = read_snapshot(args.index)
            gallery = Gallery.load(args.index)
            print(f"{args.index}: {len(gallery)} items, {gallery.index!r}, model {manifest.get('model')}")
            return 0
        options = dict(key_value(text) for text in args.backend_option)
        from visnet.data.readers import load_dataset
        from visnet.exported import ExportedModel
        from visnet.index import choose_backend, get
        from visnet.index.build import build_gallery

        if args.backend.lower().startswith("milvus"):
            import os

            if args.backend.lower() == "milvus":
                options.setdefault("uri", args.uri or os.path.join(args.out, "milvus.db"))
            for name in ("collection", "token"):
                if getattr(args, name):
                    options[name] = getattr(args, name)
        elif args.uri or args.collection or args.token:
            raise ValueError(f"--uri, --collection and --token are for --backend milvus. Received: --backend "
                             f"{args.backend}")
        if args.backend != "auto":
            probe = get(args.backend, **options)  # a bad backend or option fails before any image is read
            if probe.live and len(probe):
                raise ValueError(f"{probe!r} already holds {len(probe):,} vectors; build into an empty collection "
                                 "(--collection NAME) or drop this one first.")
        model = ExportedModel(args.model)
        read_options = {"check": args.check_images, "progress": not args.no_progress}
        if args.label:
            read_options["label"] = args.label
        dataset = load_dataset(args.data, **read_options)
        print(dataset.summary(), file=sys.stderr)
        backend = choose_backend(len(dataset)) if args.backend == "auto" else args.backend
        index = probe if args.backend != "auto" else get(backend, **options)
        begin = time.perf_counter()
        gallery, skipped = build_gallery(model.embed, dataset.records, index, args.batch_size, not args.no_progress)
        seconds = time.perf_counter() - begin
        gallery.save(args.out, model={"name": model.name, "version": str(model.version)})
    except (ValueError, TypeError, OSError, KeyError, ImportError, RuntimeError) as error:
        return report_error(error)
    for line in skipped[:10]:
        print(f"skipped {line}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"... and {len(skipped) - 10} more skipped", file=sys.stderr)
    print(f"indexed {len(gallery)} images ({len(skipped)} skipped) with {model.name} version {model.version} "
          f"into a {backend} index in {seconds:.1f} s ({len(gallery) / max(seconds, 1e-9):.1f} img/s); saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
