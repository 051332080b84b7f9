"""Layer-removal grid of a pretrained extractor (the Navee report's §7.4 and figure 15):
`python -m visnet.layer_removal --backbone vgg16 --weights imagenet --remove 0,1,4,5 --shots 1,5,10,20 --data PATH --out grid/vgg16`.

The backbone is cut N layers below its top for each N of `--remove` (all cuts come out of one
forward pass), its feature map averaged over space and L2-normalised, optionally reduced by a
PCA fitted on `--pca-images` photos of the protocol's base classes (never the novel ones), then
classified by `--classifier` (1-NN by default) on seeded N-way K-shot episodes of the novel
classes. Rows are the cuts, columns the shots. Writes OUT.csv (one row per cut and shots, with
the layer kept, its width, accuracy and 95% interval), OUT.png (the heatmap) and OUT.json.

`--weights run:runs/siamese` cuts the trunk of a trained visnet run instead of an ImageNet
network (useful where ImageNet weights cannot be downloaded). `--list-layers` prints the layers
and how many to remove to reach each.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from visnet.cli import check_grid_args, counts, int_list, key_value, report_error, size
from visnet.data.validation import CHECK_MODES


def build_parser() -> argparse.ArgumentParser:
    from visnet.backbones import backbones
    from visnet.evaluation.distances import METRICS
    from visnet.evaluation.fewshot import classifiers

    parser = argparse.ArgumentParser(prog="python -m visnet.layer_removal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset as LAYOUT:PATH or a path (layout detected); not needed with "
                                       "--list-layers")
    parser.add_argument("--backbone", default="vgg16", help=f"backbone: {', '.join(backbones.names())} "
                                                            "(default vgg16; ignored for run: weights)")
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (downloaded by Keras), a local weights file, none (random), or run:PATH "
                             "(a trained run's trunk) (default imagenet)")
    parser.add_argument("--backbone-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="backbone option, e.g. width=64 for resnet18 (repeatable)")
    parser.add_argument("--image-size", type=size, metavar="HxW",
                        help="input size (default: the protocol's image size, else 128x96; run: weights use "
                             "the run's)")
    parser.add_argument("--remove", type=counts, default=(0, 1, 2, 3, 4, 5), metavar="N,N",
                        help="layers to remove from the top, one grid row each (default 0,1,2,3,4,5)")
    parser.add_argument("--list-layers", action="store_true", help="print the layers and their removal counts, "
                                                                     "then stop")
    parser.add_argument("--pca", type=int, default=0, help="reduce each cut to this many dimensions (default 0: "
                                                           "no PCA)")
    parser.add_argument("--pca-images", type=int, default=2000,
                        help="base-class photos the PCA is fitted on (default 2000)")
    parser.add_argument("--protocol", help="protocol JSON (default: the data folder's protocol.json)")
    parser.add_argument("--label", help="label column for the reader")
    parser.add_argument("--ways", type=int, default=5, help="ways of every episode (default 5)")
    parser.add_argument("--shots", type=int_list, default=(1, 5, 10), metavar="K,K", help="shots (default 1,5,10)")
    parser.add_argument("--queries", type=int, default=15, help="queries per class and episode (default 15)")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per cell (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes and of random weights (default 0)")
    parser.add_argument("--classifier", default="1nn", help=f"classifier: {', '.join(classifiers.names())} "
                                                           "(default 1nn)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default euclidean)")
    parser.add_argument("--batch-size", type=int, default=32, help="embedding batch size (default 32)")
    parser.add_argument("--check-images", choices=CHECK_MODES, default="decode", help="image check (default decode)")
    parser.add_argument("--out", help="output prefix: writes OUT.csv, OUT.png and OUT.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def list_layers(args) -> int:
    from visnet.backbones.base import cuttable_layers
    from visnet.baselines.pretrained import load_trunk

    image_size = args.image_size or (128, 96)
    if args.data and not args.image_size:
        from visnet.evaluate import load_protocol

        protocol = load_protocol(args)
        image_size = protocol.image_size_hw if protocol and protocol.image_size_hw else image_size
    trunk, spec, _ = load_trunk(args.backbone, args.weights, image_size, dict(args.backbone_option))
    print(f"{trunk.name} at {spec.height}x{spec.width}: remove N keeps the layer on line N")
    for n, layer in enumerate(cuttable_layers(trunk)):
        shape = tuple(layer.output.shape[1:])
        usable = "" if len(shape) == 3 else "  (not a feature map: cannot be the output)"
        print(f"{n:>4}  {layer.name:<32} {shape}{usable}")
    return 0


def pca_projections(embedder, dataset, protocol, args) -> tuple[list | None, int]:
    """(one PCA per cut, fitted on a seeded sample of base-class photos, and the sample's size);
    (None, 0) without --pca."""
    if not args.pca:
        return None, 0
    from sklearn.decomposition import PCA

    from visnet.data.records import EmptyDatasetError
    from visnet.evaluation.embedding import embed_dataset

    try:
        base = dataset.where(labels=protocol.base_classes)
    except EmptyDatasetError:
        raise ValueError("--pca needs base-class photos, and the protocol's base classes have none in this "
                         "data.") from None
    rng = np.random.default_rng(args.seed)
    pick = sorted(rng.choice(len(base), size=min(args.pca_images, len(base)), replace=False).tolist())
    sample = base.select([base.ids[i] for i in pick], "PCA sample")
    _, x = embed_dataset(embedder, sample, None, args.batch_size, not args.no_progress, "PCA sample")
    projections = []
    for (start, end), cut in zip(embedder.blocks, embedder.describe()):
        dims = min(args.pca, len(x), end - start)
        if dims < args.pca:
            print(f"note: PCA of {cut['layer']} keeps {dims} dimensions (--pca {args.pca} is more than its width "
                  f"or the {len(x)} sample photos)", file=sys.stderr)
        projections.append(PCA(dims, random_state=args.seed).fit(x[:, start:end]))
    return projections, len(x)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    try:
        if args.list_layers:
            return list_layers(args)
        if not args.data or not args.out:
            raise ValueError("--data and --out are required (unless --list-layers).")
        check_grid_args(args, ("queries", "episodes", "batch_size", "pca_images"))
        if args.pca < 0:
            raise ValueError(f"--pca must be >= 0 (0: no PCA). Received: {args.pca}")
        from visnet.baselines.common import l2_normalize
        from visnet.baselines.pretrained import PretrainedEmbedder
        from visnet.evaluate import load_data, load_protocol
        from visnet.evaluation.benchmark import embed_pool
        from visnet.evaluation.fewshot import (
            GRID_FIELDS,
            accuracy_grid,
            classifiers,
            format_cell,
            pool_size,
            save_grid,
        )

        classifiers.lookup(args.classifier)
        protocol = load_protocol(args)
        image_size = args.image_size or (protocol.image_size_hw if protocol and protocol.image_size_hw else (128, 96))
        import keras

        keras.utils.set_random_seed(args.seed)  # random (`none`) weights are the same on every run
        embedder = PretrainedEmbedder(args.backbone, args.weights, list(args.remove), image_size,
                                      **dict(args.backbone_option))
        dataset, protocol = load_data(args, protocol)
        projections, pca_images = pca_projections(embedder, dataset, protocol, args)
        x, labels = embed_pool(embedder, dataset, protocol, args.batch_size, not args.no_progress)
        rows, names = [], {}
        for i, ((start, end), cut) in enumerate(zip(embedder.blocks, embedder.describe())):
            features = x[:, start:end]
            if projections:
                features = l2_normalize(projections[i].transform(features))
            names[cut["removed"]] = f"-{cut['removed']}: {cut['layer']} ({features.shape[1]})"
            for row in accuracy_grid(features, labels, [args.ways], args.shots, args.queries, args.episodes,
                                     args.seed, args.classifier, args.metric, progress=not args.no_progress,
                                     log=lambda m: print(m, file=sys.stderr)):
                rows.append({**cut, "dim": int(features.shape[1]), **row})
        config = embedder.get_config()
        pca = f", PCA {args.pca}" if args.pca else ""
        pool = pool_size(labels)
        weights = "" if config["name"].startswith("pretrained:run:") else f" ({config['weights']} weights)"
        title = (f"{config['name']}{weights}, N layers removed{pca}\n{args.classifier}, {args.ways}-way, "
                 f"{args.episodes} episodes, {pool['classes']} novel classes")
        seconds = round(time.perf_counter() - began, 1)
        report = {"embedder": config, "cuts": embedder.describe(), "pca": args.pca,
                  "pca_images": pca_images, "classifier": args.classifier,
                  "metric": args.metric, "data": args.data, "protocol": protocol.name, "pool": pool,
                  "seed": args.seed, "seconds": seconds}
        save_grid(args.out, rows, report, title, ["removed", "layer", "dim", *GRID_FIELDS], row_key="removed",
                  row_names=names)
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as error:
        return report_error(error)
    for row in rows:
        print(f"{names[row['removed']]:<40} {row['ways']}-way {row['shots']:>2}-shot  {format_cell(row)}")
    print(f"wrote {args.out}.csv, {args.out}.png, {args.out}.json in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
