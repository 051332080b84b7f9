"""The weak-label image-text model on fashion-products: tags, retrieval, text -> image search, words.

Trains `--arch weakly` on the open-set protocol's base classes only (their images and product
names; the 16 novel classes are never seen, not even their names), then measures on the novel
classes:

- tags: precision@1 and @5 of each novel-pool image's top words against the words of its own
  product name, next to the frequency baseline (always the most common training words);
- retrieval: open-set mAP, Recall@K and N-way K-shot of the image embedding, exactly as
  `python -m visnet.evaluate --run` measures every architecture;
- text -> image: each novel query product's name ranks the novel support images; a hit is an
  image of the same articleType (Recall@1 and @10), next to chance (random rankings);
- words: accuracy on (word, closer word, farther word) triplets (chance 50%): words naming the
  same articleType in the training names, and words of the same type in the shipped lexicon.

    python benchmarks/weak_labels.py --data ../shared/data/fashion-products [--recipe siamese-trunk]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.common import at_k, host, machine  # noqa: E402
from benchmarks.metric_learning import command  # noqa: E402
from visnet.training.config import TrainConfig  # noqa: E402

# `scratch`: ResNet18 (width 32) at 128x96 from scratch. ResNet50, the report's trunk, trains at a
# few images/s on 2 CPU cores and has no pretrained weights here, so there is no frozen phase.
# `siamese-trunk`: the trunk of the `siamese` run of metric_learning.py (ResNet18 width 64, trained
# on the same base classes' labels: no novel class seen), the two phases of the report: 2 epochs
# of the head with the trunk frozen, then 4 of fine-tuning.
RECIPES = {
    "scratch": dict(arch="weakly", split="open-set", val="classes:0.1", image_size=(128, 96), backbone="resnet18",
                    backbone_options={"width": 32}, embedding_dim=400, negatives=100, scale=16.0, batch_size=128,
                    min_word_count=2, optimizer="adam", lr=1e-3, schedule="cosine", warmup_epochs=1.0, epochs=10,
                    seed=0, augmentation={"grey": 0.2}),
    "siamese-trunk": dict(arch="weakly", split="open-set", val="classes:0.1", image_size=(128, 96),
                          backbone="resnet18", backbone_options={"width": 64}, embedding_dim=400, negatives=100,
                          scale=16.0, batch_size=128, min_word_count=2, optimizer="adam", lr=1e-3, schedule="cosine",
                          warmup_epochs=0.5, epochs=6, freeze_epochs=2, seed=0, augmentation={"grey": 0.2}),
    # Corbiere's recipe proper: an ImageNet trunk (EfficientNet-Lite0, offline), the head and word
    # vectors first on the frozen trunk, then the top 3 blocks fine-tuned (batch norm frozen).
    "imagenet-trunk": dict(arch="weakly", split="open-set", val="classes:0.1", image_size=(128, 96),
                           backbone="efficientnet-lite0", weights="imagenet", embedding_dim=400, negatives=100,
                           scale=16.0, batch_size=128, min_word_count=2, optimizer="adam", schedule="cosine",
                           warmup_epochs=0.3, epochs=5, phases=["none:3:1e-3", "3:2:3e-4"], freeze_batchnorm=True,
                           seed=0, augmentation={"grey": 0.2}),
}
TITLES = {"scratch": "trained from scratch", "siamese-trunk": "on the trunk of the `siamese` run",
          "imagenet-trunk": "on an ImageNet EfficientNet-Lite0 trunk"}
RESULT_NAMES = {"scratch": "weak_labels", "siamese-trunk": "weak_labels_siamese_trunk",
                "imagenet-trunk": "weak_labels_imagenet_trunk"}


def trunk_weights(runs_dir: str) -> str:
    """The backbone weights of the metric-learning `siamese` run, saved once as a weights file."""
    import keras

    import visnet.layers  # noqa: F401
    import visnet.losses  # noqa: F401

    path = os.path.join(runs_dir, "siamese", "backbone.weights.h5")
    if not os.path.exists(path):
        checkpoint = os.path.join(runs_dir, "siamese", "best.keras")
        if not os.path.exists(checkpoint):
            raise FileNotFoundError(f"{checkpoint} is missing: run benchmarks/metric_learning.py --archs siamese first.")
        keras.models.load_model(checkpoint, compile=False).get_layer("backbone").save_weights(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="where the run goes")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="scratch",
                        help="scratch (default) or siamese-trunk (needs the siamese run of metric_learning.py)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (for a quick check)")
    parser.add_argument("--word-power", type=float, default=0.0, metavar="A",
                        help="training words drawn in proportion to their count ** A (default 0: uniform over "
                             "words); a value other than 0 is a run and a result of its own (suffix -powerA)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.data.text import load_type_lexicon, word_types
    from visnet.evaluation.benchmark import BenchmarkSettings, run_benchmark
    from visnet.evaluation.embedding import embed_dataset
    from visnet.evaluation.text import (
        frequency_scores,
        label_triplets,
        lexicon_triplets,
        tag_precision,
        text_recall,
        word_triplet_accuracy,
    )
    from visnet.training.callbacks import load_state
    from visnet.training.data import read_training_data
    from visnet.training.runs import Run
    from visnet.training.trainer import train

    recipe = RECIPES[args.recipe]
    settings = dict(recipe, epochs=args.epochs or recipe["epochs"])
    suffix = f"-power{args.word_power:g}" if args.word_power else ""
    if args.word_power:
        settings["word_power"] = args.word_power
    if args.recipe == "siamese-trunk":
        settings["weights"] = trunk_weights(args.runs_dir)
    name = ("weakly" if args.recipe == "scratch" else f"weakly-{args.recipe}") + suffix
    out = os.path.join(args.runs_dir, name)
    config = TrainConfig(data=args.data, out=out, **settings)
    state = load_state(out)
    if state is None or state["epochs_done"] < config.epochs:
        train(config, resume=state is not None, progress=False)
    state, run = load_state(out), Run(out)

    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    dataset = load_dataset(args.data, check="none")
    start = time.perf_counter()
    embedder = run.embedder("best")
    retrieval = run_benchmark(embedder, dataset, protocol, BenchmarkSettings(), progress=False)

    words = run.word_model("best")
    vocabulary = words.vocabulary
    split = protocol.open_set(dataset, missing="skip")
    pool, pool_vectors = embed_dataset(embedder, split.pool, progress=False)
    bags = vocabulary.bags(r.text for r in pool)
    tags = tag_precision(words.tag_scores(pool_vectors), bags, ks=(1, 5))
    tags_no_prior = tag_precision(words.tag_scores(pool_vectors, prior=False), bags, ks=(1, 5))
    frequency = tag_precision(frequency_scores(vocabulary.counts, len(bags)), bags, ks=(1, 5))

    support, support_vectors = embed_dataset(embedder, split.support, progress=False)
    queries = [q for q in split.query if vocabulary.bag(q.text).size]
    scores = np.stack([words.text_scores(q.text, support_vectors) for q in queries])
    support_labels = [r.label for r in support]
    query_labels = [q.label for q in queries]
    text = text_recall(scores, query_labels, support_labels, ks=(1, 10))
    rng = np.random.default_rng(0)
    chance = text_recall(rng.random(scores.shape), query_labels, support_labels, ks=(1, 10))

    typed = word_types(vocabulary, load_type_lexicon()[1])
    triplets = lexicon_triplets(typed, 5000, seed=0)
    triplet_accuracy = word_triplet_accuracy(words.word_vectors, triplets)
    # Words that name the same kind of product, from the training (base-class) names only.
    train_records = read_training_data(run.config, progress=False).train
    by_label = label_triplets(vocabulary.bags(r.text for r in train_records), train_records.labels, 5000, seed=0)
    label_accuracy = word_triplet_accuracy(words.word_vectors, by_label)
    examples = {w: [n for n, _ in words.neighbours(w, 5)] for w in ("navy", "striped", "sandals", "kurta", "casual")
                if w in vocabulary}
    sample_tags = {r.text: [w for w, _ in t] for r, t in zip(list(pool)[::100], words.tag(pool_vectors[::100], 5))}

    history = state["history"]
    report = {
        "benchmark": "weak_labels", "data": args.data, "protocol": protocol.name,
        "recipe": args.recipe,
        "command": f"python benchmarks/weak_labels.py --data {args.data} --recipe {args.recipe}"
                   + (f" --word-power {args.word_power:g}" if args.word_power else ""),
        "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "settings": settings,
        "train_command": (command(config) + f" --data {args.data} --out runs/{name}").replace(ROOT + os.sep, ""),
        "vocabulary_size": len(vocabulary), "parameters": run.info["parameters"],
        "train_seconds": round(sum(h.get("epoch_seconds", 0) for h in history), 1), "epochs": state["epochs_done"],
        "best_epoch": state["best_epoch"], "eval_seconds": round(time.perf_counter() - start, 1),
        "tags": {"images": int(sum(len(b) > 0 for b in bags)), "learned": tags, "learned_no_prior": tags_no_prior,
                 "frequency": frequency},
        "text_to_image": {"queries": len(queries), "gallery": len(support), "recall": text, "chance": chance},
        "word_triplets": {"triplets": len(triplets), "accuracy": triplet_accuracy,
                          "typed_words": int((typed >= 0).sum())},
        "label_triplets": {"triplets": len(by_label), "accuracy": label_accuracy,
                           "words": int(len(np.unique(by_label[:, :2])))},
        "neighbours": examples, "sample_tags": sample_tags, "retrieval": retrieval,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    result = RESULT_NAMES[args.recipe] + suffix.replace("-", "_")
    with open(os.path.join(args.out_dir, result + ".json"), "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    with open(os.path.join(args.out_dir, result + ".md"), "w") as handle:
        handle.write(markdown(report))
    print(markdown(report))
    return 0



def markdown(r: dict) -> str:
    hog_path = os.path.join(HERE, "results", "hog.json")
    hog = json.load(open(hog_path))["results"] if os.path.exists(hog_path) else None

    def few(results, ways, shots):
        found = [f["accuracy"] for f in results["few_shot"] if (f["ways"], f["shots"]) == (ways, shots)]
        return f"{100 * found[0]:.1f}%" if found and found[0] is not None else "n/a"

    t, x = r["tags"], r["text_to_image"]
    lines = [
        f"### Weak-label image-text model, {TITLES[r.get('recipe', 'scratch')]}"
        + (f", words drawn as count ** {r['settings']['word_power']:g}" if r["settings"].get("word_power") else "")
        + " (trained on base-class images and "
        "names; measured on the 16 novel classes)",
        "", f"Command: `{r['command']}` — training {r['train_seconds'] / 60:.0f} min ({r['epochs']} epochs), "
        f"measuring {r['eval_seconds'] / 60:.1f} min, {host(r.get('machine', {}))}", "",
        f"| tags of novel-class images ({t['images']}) | precision@1 | precision@5 |", "|---|---|---|",
    ]
    power = r.get("settings", {}).get("word_power", 0.0)
    prior = (f"`weakly`, word frequencies as prior ((1 − {power:g}) × log count)" if power
             else "`weakly`, word frequencies as prior")
    for name, key in (("frequency baseline (most common training words)", "frequency"),
                      (prior, "learned"),
                      ("`weakly`, image-word similarity alone", "learned_no_prior")):
        lines.append(f"| {name} | {at_k(t[key], 1):.3f} | {at_k(t[key], 5):.3f} |")
    lines.append("")
    lines += ["| image retrieval (open set) | mAP | R@1 | 5-way 1-shot | 16-way 5-shot |", "|---|---|---|---|---|"]
    for name, results in (("HOG", hog), ("`weakly` image embedding", r["retrieval"])):
        if results:
            o = results["open_set"]
            lines.append(f"| {name} | {o['mAP']:.3f} | {o['recall']['1']:.3f} | {few(results, 5, 1)} | "
                         f"{few(results, 16, 5)} |")
    rec, ch = x["recall"], x["chance"]
    lines += ["", f"Text → image: {x['queries']} novel query product names rank {x['gallery']} novel support images; "
              f"a hit is an image of the same articleType. Recall@1 {at_k(rec, 1):.3f}, Recall@10 {at_k(rec, 10):.3f} "
              f"(chance {at_k(ch, 1):.3f} and {at_k(ch, 10):.3f}).", "",
              f"Word triplets (chance 50%): words naming the same kind of product closer than words naming "
              f"another (a word's articleType is the one of 60%+ of the training names holding it; "
              f"{r['label_triplets']['triplets']} triplets over {r['label_triplets']['words']} words): "
              f"{100 * r['label_triplets']['accuracy']:.1f}%; words of the same lexicon type closer than words "
              f"of another ({r['word_triplets']['triplets']} triplets over {r['word_triplets']['typed_words']} "
              f"typed words, e.g. navy closer to red than to jeans): {100 * r['word_triplets']['accuracy']:.1f}%.",
              "",
              f"Vocabulary: {r['vocabulary_size']} words from the base classes' product names. Nearest words: "
              + "; ".join(f"{w} → {', '.join(n)}" for w, n in r["neighbours"].items()) + ".", "",
              f"Training: `{r['train_command']}`", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
