"""Train an embedding: `python -m visnet.train --arch capsule --data PATH --out runs/capsule-1`.

Feeds tf.data through the samplers, validates retrieval every epoch (`val_mAP`,
`val_recall@1`, `val_recall@5` in the logs), keeps the best and the last checkpoint, writes
TensorBoard logs and the full config as JSON. `--resume` continues a run that was killed.
"""

from __future__ import annotations

import argparse
import os
import sys

from visnet.cli import key_value, name_list, report_error, size
from visnet.training.config import OPTIMIZERS, SCHEDULES, SPLITS, STRATEGIES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    from visnet.losses import MININGS
    from visnet.models import architectures

    p = argparse.ArgumentParser(prog="python -m visnet.train", description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    data = p.add_argument_group("data")
    data.add_argument("--data", help="dataset as LAYOUT:PATH or a path (layout detected)")
    data.add_argument("--label", help="label column (default: the reader's or the protocol's)")
    data.add_argument("--split", choices=SPLITS, default=d.split,
                      help="open-set: the protocol's base classes only; closed-set: its train ids; all (default)")
    data.add_argument("--val", default=d.val, help="validation held out of training: classes:F, images:F or none "
                      f"(default {d.val})")
    data.add_argument("--val-max-images", type=int, default=d.val_max_images,
                      help=f"cap on validation images (default {d.val_max_images})")
    data.add_argument("--check-images", choices=("decode", "header", "exists", "none"), default=d.check_images,
                      help="image file check before training (default decode)")
    data.add_argument("--no-cache-images", dest="cache_images", action="store_false",
                      help="read image files every step instead of decoding them once into memory")
    model = p.add_argument_group("model")
    model.add_argument("--arch", default=d.arch, help=f"architecture: {', '.join(architectures.names())} "
                       f"(default {d.arch})")
    model.add_argument("--image-size", type=size, default=d.image_size, metavar="HxW",
                       help="input size (default 128x96)")
    model.add_argument("--resize", choices=("pad", "crop", "stretch"), default=d.resize,
                       help="aspect ratio handling (default pad)")
    model.add_argument("--embedding-dim", type=int, help="embedding size (default: the architecture's)")
    from visnet.backbones import backbones

    model.add_argument("--backbone", help=f"trunk: {', '.join(backbones.names())} (default: the architecture's)")
    model.add_argument("--backbone-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="backbone option, repeatable (e.g. width=32)")
    model.add_argument("--weights", help="backbone weights: imagenet (efficientnet-lite0/1/2: offline, from their packages; "
                       "vgg16, resnet50: the Keras download), a weights file, or none (default: imagenet on siamese "
                       "and weakly for their default trunk or any efficientnet-lite, which then fine-tune in phases; "
                       "none otherwise)")
    model.add_argument("--trainable", default=d.trainable,
                       help="backbone blocks that train: all (default), none, or N (the last N blocks)")
    model.add_argument("--remove-top-layers", dest="remove_top", type=int, default=0,
                       help="drop N layers from the top of the backbone (default 0)")
    model.add_argument("--arch-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="architecture option, repeatable (e.g. features=sc, routings=3, deep_dim=4096)")
    loss = p.add_argument_group("loss and batches")
    loss.add_argument("--loss", help="triplet, hinge, contrastive, prototypical, normsoftmax or sampled-softmax "
                      "(weakly) (default: the architecture's)")
    loss.add_argument("--mining", choices=MININGS, help="triplet mining (default semi-hard); for contrastive: "
                      "none (sampled pairs, the default) or batch-all (every pair of a P x K batch)")
    loss.add_argument("--margin", type=float, help="loss margin (hinge: the gap g)")
    loss.add_argument("--top-k", type=float, help="fraction of largest triplet losses kept by top-k mining")
    loss.add_argument("--distance", choices=("euclidean", "squared"), help="loss distance")
    loss.add_argument("--shots", type=int,
                      help="prototypical and maml: support images per class of an episode (default k // 2)")
    loss.add_argument("--scale", type=float, help="normsoftmax, sampled-softmax: inverse temperature of the softmax "
                      "(default 16)")
    loss.add_argument("--p", type=int, default=d.p, help=f"classes per batch (default {d.p})")
    loss.add_argument("--k", type=int, default=d.k, help=f"images per class in a batch (default {d.k})")
    loss.add_argument("--batch-size", type=int, default=d.batch_size,
                      help=f"batch size for pair, explicit-triplet and (image, word) batches (default {d.batch_size})")
    loss.add_argument("--p-same", type=float, default=d.p_same, help=f"share of positive pairs (default {d.p_same})")
    text = p.add_argument_group("text (--arch weakly)")
    text.add_argument("--text-columns", type=name_list, metavar="COL,COL",
                      help="columns joined into each image's text (benchmark, kaggle, csv layouts; default "
                      "productDisplayName or text), e.g. productDisplayName,baseColour,usage,season")
    text.add_argument("--text-languages", type=name_list, default=tuple(d.text_languages), metavar="LANG,LANG",
                      help="stop-word languages (default en,fr)")
    text.add_argument("--drop-words", type=name_list, default=(), metavar="WORD,WORD",
                      help="more words to drop from the text (site or brand names), besides shop words and sizes")
    text.add_argument("--vocabulary-size", type=int, default=d.vocabulary_size,
                      help=f"most frequent words kept (default {d.vocabulary_size})")
    text.add_argument("--min-word-count", type=int, default=d.min_word_count,
                      help=f"texts a word must appear in (default {d.min_word_count})")
    text.add_argument("--negatives", type=int, help="sampled negative words per positive (default 100)")
    text.add_argument("--close-negatives", type=int,
                      help="how many negatives are drawn from the positive's 10 nearest words (default 0)")
    text.add_argument("--word-power", type=float, default=d.word_power, metavar="A",
                      help="training words are drawn in proportion to (images holding them) ** A: 0 uniform over "
                           "words (default, rare words learn as much as common ones), 1 as often as they occur "
                           "(better tags: most of a name is common words)")
    text.add_argument("--lexicon", help="word-type lexicon JSON for --arch-option types=4 (default: visnet's)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, help=f"epochs (default {d.epochs}; with --resume: a new total, "
                     "for a constant schedule)")
    opt.add_argument("--freeze-epochs", type=int, default=d.freeze_epochs,
                     help="first epochs with the backbone frozen (head only), then fine-tune it (default 0)")
    opt.add_argument("--phase", dest="phases", action="append", metavar="TRAINABLE:EPOCHS[:LR]",
                     help="a fine-tuning phase, repeatable, in order: the trunk blocks that train (all, none or "
                     "the last N), its epochs and learning rate (default --lr), each with a fresh optimizer and "
                     "warm-up, e.g. --phase none:1:1e-3 --phase 3:2:3e-4 --phase all:3:1e-4 (--epochs defaults "
                     "to their sum)")
    opt.add_argument("--freeze-batchnorm", action="store_const", const=True, default=None,
                     help="keep the trunk's batch-norm statistics and weights frozen while it fine-tunes "
                     "(default: on for a pretrained trunk)")
    opt.add_argument("--no-freeze-batchnorm", dest="freeze_batchnorm", action="store_const", const=False,
                     help="let the trunk's batch norm adapt while it fine-tunes")
    opt.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass of the sampler)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optimizer (default adam)")
    opt.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay,
                     help="weight decay (default 0; 0.004 for adamw)")
    opt.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule (default cosine)")
    opt.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (default 0)")
    opt.add_argument("--no-augment", dest="augment", action="store_false", help="no random augmentation")
    opt.add_argument("--augment-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="augmentation strength, repeatable (flip, rotation, crop, brightness, contrast, "
                     "saturation, hue, grey; photos taken by people: background, perspective, lighting, "
                     "occlusion, e.g. background=0.5 perspective=0.2 lighting=0.3 occlusion=0.3)")
    opt.add_argument("--seed", type=int, default=d.seed, help="seed of sampling, augmentation and weights (default 0)")
    opt.add_argument("--patience", type=int, help="stop after N epochs without a better val_mAP")
    opt.add_argument("--strategy", choices=STRATEGIES, default=d.strategy, help="tf.distribute strategy (default)")
    opt.add_argument("--cpu-replicas", type=int, default=d.cpu_replicas,
                     help="split the CPU into N logical devices (for --strategy mirrored without GPUs)")
    opt.add_argument("--mixed-precision", action="store_true", help="float16 compute (for GPUs)")
    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last checkpoint (its config.json wins; "
                     "--epochs may extend it)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=args.arch, data=args.data or "", out=args.out, label=args.label, split=args.split, val=args.val,
        val_max_images=args.val_max_images, check_images=args.check_images, cache_images=args.cache_images,
        image_size=args.image_size, resize=args.resize, embedding_dim=args.embedding_dim, backbone=args.backbone,
        backbone_options=dict(args.backbone_option), weights=args.weights, trainable=args.trainable,
        remove_top=args.remove_top, arch_options=dict(args.arch_option), loss=args.loss, margin=args.margin,
        mining=args.mining, top_k=args.top_k, distance=args.distance, shots=args.shots, scale=args.scale, p=args.p,
        k=args.k,
        batch_size=args.batch_size, p_same=args.p_same, vocabulary_size=args.vocabulary_size,
        text_columns=list(args.text_columns) if args.text_columns else None,
        text_languages=list(args.text_languages), drop_words=list(args.drop_words), min_word_count=args.min_word_count, negatives=args.negatives, close_negatives=args.close_negatives,
        word_power=args.word_power,
        lexicon=args.lexicon, epochs=args.epochs, freeze_epochs=args.freeze_epochs,
        phases=list(args.phases) if args.phases else None, freeze_batchnorm=args.freeze_batchnorm,
        steps_per_epoch=args.steps_per_epoch,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, augment=args.augment, augmentation=dict(args.augment_option),
        seed=args.seed, patience=args.patience, strategy=args.strategy, cpu_replicas=args.cpu_replicas,
        mixed_precision=args.mixed_precision,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.resume:
            path = os.path.join(args.out, "config.json")
            if not os.path.exists(path):
                raise FileNotFoundError(f"Nothing to resume in {args.out}: no config.json.")
            config = TrainConfig.load(path)
            if args.epochs is not None and args.epochs != config.epochs:
                if config.phases:
                    raise ValueError(f"{args.out} trains in phases adding up to {config.epochs} epochs; "
                                     "a phased run cannot grow. Start a new run.")
                if config.schedule == "cosine" and config.arch != "maml":  # MAML's outer rate is constant
                    raise ValueError(f"{args.out} decays its learning rate over {config.epochs} epochs (cosine): "
                                     f"training to {args.epochs} would run the extra epochs at the final rate. "
                                     "Start a new run, or use --schedule constant for runs meant to grow.")
                config.epochs = args.epochs
                config.save(path)
        else:
            if not args.data:
                parser.error("--data is required (except with --resume)")
            if args.epochs is None:
                args.epochs = TrainConfig.epochs
                if args.phases:
                    from visnet.training.phases import parse_phase

                    args.epochs = sum(parse_phase(text, args.lr)[1] for text in args.phases)
            config = config_from_args(args)
        from visnet.data.augment import Augmentation

        Augmentation(**config.augmentation)  # fail fast on a bad strength
        from visnet.training.trainer import train

        run = train(config, resume=args.resume, progress=not args.no_progress)
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as error:
        return report_error(error)
    state = run.info
    print(f"run written to {run.path} ({state['train_images']} training images, {state['parameters']:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
