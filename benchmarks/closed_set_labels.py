"""Closed-set labels against the products' own names: how many 1-NN mistakes are photos whose
label their name contradicts.

A photo's product name "names" a class when the class name occurs in it as words (case, plurals
and hyphens aside: `Tshirts` is named by "Nike Men Blue T-shirt"). A photo whose name names
another class of the protocol and not its own label is counted as contradicted, by (label, the
class its name names; the longest when it names several). On the fashion data, 171 of the 387
photos labelled `Heels` are named "... Flats" and show flat sandals: the closed-set test split
holds such photos, and a model that calls them flats is counted wrong.

For each `--run` (optionally at another input size), the closed-set test photos are classified by
their nearest training photo (as `python -m visnet.evaluate` does) and the mistakes are split into
those on contradicted photos, and among them those predicted as the class their name names.
Without `--run`, only the labels and names are counted. `--run NAME=PATH+PATH` measures several runs as
one model; `--merge` adds this call's rows to the report already written.

    python benchmarks/closed_set_labels.py --data ../shared/data/fashion-products \\
        --run effnet-closed-224=benchmarks/runs/effnet-closed-224@288x216
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    commands_text,
    earlier_report,
    header,
    merge_report,
    parse_runs,
    write_report,
)


def _words(text: str) -> list[list[str]]:
    """Word sequences of a text, lower-cased and singular: hyphens once as separators, once joined."""
    variants = []
    for joined in (" ", ""):
        cleaned = re.sub(r"[^a-z ]", " ", text.lower().replace("-", joined))
        variants.append([w[:-1] if len(w) > 3 and w.endswith("s") else w for w in cleaned.split()])
    return variants


def names(text: str, label: str) -> bool:
    """Whether `text` holds the class name `label` as consecutive words (see `_words`)."""
    phrase = _words(label)[1]
    n = len(phrase)
    return n > 0 and any(words[i:i + n] == phrase for words in _words(text) for i in range(len(words) - n + 1))


def named_class(text: str, label: str, classes: list[str]) -> str | None:
    """The class `text` names instead of `label`: None when it names `label` or no other class;
    the longest class name when it names several. A class within the label's own name (`Sandals`
    for `Sports Sandals`) is a less specific name, not another class."""
    if names(text, label):
        return None
    others = [c for c in classes if c != label and names(text, c) and not names(label, c)]
    return max(others, key=lambda c: (len(c), c)) if others else None


def contradictions(records, classes: list[str]) -> dict[str, str]:
    """{photo id: the class its name names} for the records whose name contradicts their label."""
    out = {}
    for record in records:
        other = named_class(record.text or "", str(record.label), classes)
        if other is not None:
            out[record.id] = other
    return out


def count_split(records, contradicted: dict[str, str]) -> dict:
    """Names against labels over one split: how many name their label, another class, or none."""
    own = sum(names(r.text or "", str(r.label)) for r in records)
    pairs = Counter((str(r.label), contradicted[r.id]) for r in records if r.id in contradicted)
    return {"photos": len(records), "names_own_label": own, "names_another_class": sum(pairs.values()),
            "names_no_class": len(records) - own - sum(pairs.values()),
            "pairs": [{"label": a, "named": b, "count": n}
                      for (a, b), n in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))]}


def measure_run(embedder, train, test, contradicted: dict[str, str], progress: bool) -> dict:
    """1-NN over the closed-set split and its mistakes split by what the test photos' names say."""
    from visnet.evaluation.classification import confusions, knn_predict
    from visnet.evaluation.embedding import embed_dataset

    train_records, train_x = embed_dataset(embedder, train, progress=progress, description="training photos")
    test_records, test_x = embed_dataset(embedder, test, progress=progress, description="test photos")
    train_y = np.array([str(r.label) for r in train_records])
    test_y = np.array([str(r.label) for r in test_records])
    predicted = knn_predict(train_x, train_y, test_x, ks=(1,))[1]
    wrong = predicted != test_y
    named = np.array([contradicted.get(r.id) for r in test_records], dtype=object)
    flagged = named != None  # noqa: E711 (element-wise)
    as_named = wrong & flagged & (predicted == named)
    return {"test": len(test_y), "train": len(train_y), "accuracy": float(np.mean(~wrong)), "errors": int(wrong.sum()),
            "contradicted": int(flagged.sum()), "errors_on_contradicted": int((wrong & flagged).sum()),
            "errors_as_named": int(as_named.sum()),
            "accuracy_on_the_rest": float(np.mean(~wrong[~flagged])) if (~flagged).any() else None,
            "accuracy_on_contradicted": float(np.mean(~wrong[flagged])) if flagged.any() else None,
            "confusions": confusions(test_y, predicted, top=6)}


def markdown(report: dict) -> str:
    test, train = report["splits"]["test"], report["splits"]["train"]
    lines = ["### Closed-set labels against the products' names", "",
             f"{commands_text(report)}. A photo is contradicted when its product name names another of the "
             "protocol's classes and not its own label (case, plurals and hyphens aside).", "",
             "| split | photos | name names its label | names another class, not its label | names no class |",
             "|---|---|---|---|---|"]
    for name, split in (("training", train), ("test", test)):
        lines.append(f"| {name} | {split['photos']} | {split['names_own_label']} | {split['names_another_class']} | "
                     f"{split['names_no_class']} |")
    pairs = ", ".join(f"{p['label']} named {p['named']} {p['count']}" for p in test["pairs"][:8])
    lines += ["", f"Contradicted test photos, most frequent first: {pairs or 'none'}."]
    if report["rows"]:
        lines += ["", "| model | input | 1-NN | errors | on contradicted photos | of them, predicted as "
                      "named | 1-NN on the other photos | 1-NN on contradicted photos |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in report["rows"]:
            r = row["results"]
            size = "x".join(map(str, row["image_size"])) if row["image_size"] else "its own"
            rest = f"{100 * r['accuracy_on_the_rest']:.1f}%" if r["accuracy_on_the_rest"] is not None else "–"
            flagged = (f"{100 * r['accuracy_on_contradicted']:.1f}%" if r["accuracy_on_contradicted"] is not None
                       else "–")
            lines.append(f"| {row['name']} | {size} | {100 * r['accuracy']:.1f}% | {r['errors']} of {r['test']} | "
                         f"{r['errors_on_contradicted']} of {r['contradicted']} | {r['errors_as_named']} | "
                         f"{rest} | {flagged} |")
    return "\n".join(lines) + "\n"


def write_sheet(path: str, records, contradicted: dict[str, str], limit: int = 48) -> int:
    """A contact sheet of up to `limit` contradicted photos (8 a row), each captioned
    `label / named`, to look at; returns how many it shows."""
    import cv2

    from visnet.data.image_spec import ImageSpec
    from visnet.data.pipeline import load_images

    flagged = [r for r in records if r.id in contradicted][:limit]
    images, kept = load_images([r.path for r in flagged], ImageSpec(128, 96))
    shown = [flagged[i] for i in kept]  # undecodable photos are left out
    if not shown:
        return 0
    cell_h, cell_w, caption = 128, 96, 26
    columns = 8
    sheet = np.full((((len(shown) + columns - 1) // columns) * (cell_h + caption), columns * cell_w, 3), 255, np.uint8)
    for i, (record, image) in enumerate(zip(shown, images)):
        top, left = (i // columns) * (cell_h + caption), (i % columns) * cell_w
        sheet[top + caption:top + caption + cell_h, left:left + cell_w] = image
        for line, text in enumerate((str(record.label), contradicted[record.id])):
            cv2.putText(sheet, text[:16], (left + 2, top + 10 + 12 * line), cv2.FONT_HERSHEY_PLAIN, 0.8,
                        (0, 0, 0) if line == 0 else (200, 0, 0), 1)
    if not cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write the contact sheet {path}")
    return len(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a benchmark-layout folder with protocol.json and names")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=PATH[@HxW]",
                        help="a run trained on the closed-set training split (repeatable), optionally run at input "
                             "size HxW; PATH+PATH: several runs as one model; without any, only names and labels "
                             "are counted")
    parser.add_argument("--sheet", metavar="PNG", help="also write a contact sheet of contradicted test photos")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of OUT.json that this call does not redo (same name and input size)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "closed_set_labels"), help="output prefix")
    args = parser.parse_args(argv)
    runs = parse_runs(parser, args.run)
    if not os.path.isfile(os.path.join(args.data, "protocol.json")):
        parser.error(f"--data needs a protocol.json. Received: {args.data!r}")

    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.training.runs import open_run

    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    if not protocol.train_ids or not protocol.test_ids:
        parser.error(f"the protocol of {args.data} has no closed-set training and test photos")
    dataset = load_dataset(args.data, check="none")
    known = set(dataset.ids)
    train = dataset.select([i for i in protocol.train_ids if i in known], "closed-set training photos")
    test = dataset.select([i for i in protocol.test_ids if i in known], "closed-set test photos")
    classes = sorted({str(r.label) for r in train.records})
    contradicted = contradictions([*train.records, *test.records], classes)
    splits = {"train": count_split(train.records, contradicted), "test": count_split(test.records, contradicted)}
    rows = []
    for name, path, size in runs:
        start = time.perf_counter()
        embedder = open_run(path.split("+")).embedder("best", image_size=size)
        results = measure_run(embedder, train, test, contradicted, not args.no_progress)
        rows.append({"name": name, "run": path, "image_size": list(size) if size else None,
                     "seconds": round(time.perf_counter() - start, 1), "results": results})
        print(f"{name}: 1-NN {results['accuracy']:.3f}, {results['errors_on_contradicted']} of "
              f"{results['errors']} errors on contradicted photos", file=sys.stderr)
    if args.sheet:
        print(f"contact sheet: {write_sheet(args.sheet, test.records, contradicted)} photos in {args.sheet}",
              file=sys.stderr)
    report = {**header("closed_set_labels", "benchmarks/closed_set_labels.py",
                       argv if argv is not None else sys.argv[1:]),
              "data": args.data, "protocol": protocol.name, "classes": len(classes), "splits": splits, "rows": rows,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    write_report(merge_report(report, earlier_report(args)), args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
