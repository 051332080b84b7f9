"""The pretrained-extractor baseline's layer-removal grid (the Navee report's §7.4, figure 15).

Runs `python -m visnet.layer_removal` for each extractor below on the novel classes: 5-way
episodes, 1-NN, rows = layers removed from the top, columns = shots. EfficientNet-Lite0's
ImageNet weights resolve offline (its package); VGG16's are the Keras download, and where that
fails (as on the machine these figures come from) it is recorded as not measured. The trunk of
a run trained on the base classes and a randomly initialised VGG16 (the floor) stand beside them.

    python benchmarks/layer_removal.py --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, host, last_line, run_python, write_report  # noqa: E402

#: (name, arguments of visnet.layer_removal). `{runs}` is `--runs-dir`.
EXTRACTORS = (
    # The ImageNet network every other figure uses (it resolves offline): cuts at the head and at the outputs of
    # stages 7, 6, 5 and 4; 224x224 input (its ImageNet size: at 128x96 its features are weaker).
    ("EfficientNet-Lite0, ImageNet, 224x224", ["--backbone", "efficientnet-lite0", "--weights", "imagenet",
                                               "--image-size", "224x224", "--remove", "0,3,11,46,72"]),
    ("EfficientNet-Lite0, ImageNet, 224x224, PCA 64", ["--backbone", "efficientnet-lite0", "--weights", "imagenet",
                                                       "--image-size", "224x224", "--remove", "0,3,11,46,72",
                                                       "--pca", "64"]),
    ("VGG16, ImageNet", ["--backbone", "vgg16", "--weights", "imagenet", "--remove", "0,1,4,5,8"]),
    ("ResNet-18 trunk of the `siamese` run", ["--weights", "run:{runs}/siamese", "--remove", "0,7,17,24,34"]),
    ("ResNet-18 trunk of the `siamese` run, PCA 64", ["--weights", "run:{runs}/siamese", "--remove", "0,7,17,24,34",
                                                      "--pca", "64"]),
    ("VGG16, random weights", ["--backbone", "vgg16", "--weights", "none", "--remove", "0,1,4,5,8"]),
)


#: The message `visnet.backbones.download_error` starts with.
DOWNLOAD_FAILED = "Could not download the ImageNet weights"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="benchmark folder (manifest.csv + protocol.json)")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="where the trained runs are")
    parser.add_argument("--shots", default="1,5,10,20", help="shots (default 1,5,10,20)")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per cell (default 600)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "layer_removal"), help="output prefix")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="an extractor to measure, repeatable; the others are kept from OUT.json (default: all)")
    args = parser.parse_args(argv)
    names = [name for name, _ in EXTRACTORS]
    only = args.only
    if only and set(only) - set(names):
        parser.error(f"unknown extractors {sorted(set(only) - set(names))}; choose from {names}")
    previous, previous_unavailable = {}, {}
    if os.path.exists(args.out + ".json"):
        with open(args.out + ".json") as handle:
            old = json.load(handle)
        previous = {g["name"]: {"kept": f"measured on {old.get('date', 'an earlier day')}", **g} for g in old["grids"]}
        previous_unavailable = {u["name"]: u for u in old.get("unavailable", [])}

    began = time.perf_counter()
    grids, unavailable = [], []
    figures = os.path.join(os.path.dirname(args.out), "layer_removal")
    os.makedirs(figures, exist_ok=True)
    for name, arguments in EXTRACTORS:
        if only and name not in only:
            if name in previous:
                grids.append(previous[name])
            elif name in previous_unavailable:
                unavailable.append(previous_unavailable[name])
            continue
        arguments = [a.replace("{runs}", args.runs_dir) for a in arguments]
        prefix = os.path.join(figures, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
        done, seconds = run_python(["-m", "visnet.layer_removal", "--data", args.data, *arguments, "--shots",
                                    args.shots, "--episodes", str(args.episodes), "--no-progress", "--out", prefix],
                                   cwd=os.path.dirname(HERE))
        seconds = round(seconds, 1)
        shown = " ".join(shlex.quote(a.replace(args.runs_dir, "runs")) for a in arguments)
        if done.returncode:
            reason = last_line(done.stderr, f"exit {done.returncode}")
            if "Run directory not found" in reason and name in previous:  # the run is gone: keep its grid
                grids.append({**previous[name], "kept": f"measured earlier; {reason.removeprefix('error: ')} now"})
                print(f"{name}: kept from the previous report ({reason})", file=sys.stderr)
                continue
            if DOWNLOAD_FAILED not in reason:  # only a missing download is "not measurable here"
                print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            unavailable.append({"name": name, "arguments": shown, "error": reason})
            print(f"{name}: not measured: {reason}", file=sys.stderr)
            continue
        result = json.load(open(prefix + ".json"))
        grids.append({"name": name, "arguments": shown, "seconds": seconds, "cuts": result["cuts"],
                      "rows": result["rows"], "pool": result["pool"], "pca_images": result["pca_images"], "png": os.path.relpath(prefix + ".png", os.path.dirname(HERE))})
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    report = {**header("layer_removal", "benchmarks/layer_removal.py", argv if argv is not None else sys.argv[1:]),
              "episodes": args.episodes, "grids": grids, "unavailable": unavailable,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    from visnet.evaluation.fewshot import format_cell

    lines = [
        "### Pretrained extractors with layers removed (5-way, 1-NN, novel classes)",
        "",
        f"Command: `{report['command']}` ({report['wall_seconds'] / 60:.0f} min on {host(report['machine'])}). "
        "Each grid is `python -m visnet.layer_removal --data DATA ARGUMENTS`: the trunk cut N layers below its "
        "top, its feature map averaged and L2-normalised (PCA fitted on base-class photos where stated), "
        f"1-NN on {report['episodes']} seeded 5-way episodes with 15 queries per class (mean ± 95% interval).",
        "",
    ]
    for grid in report["grids"]:
        shots = sorted({r["shots"] for r in grid["rows"]})
        pool = grid["pool"]
        pca = f", PCA fitted on {grid['pca_images']:,} base-class photos" if grid.get("pca_images") else ""
        kept = f"; {grid['kept']}" if grid.get("kept") else ""
        lines += [f"**{grid['name']}** (`{grid['arguments']}`, {grid['seconds']:.0f} s; {pool['classes']} novel "
                  f"classes, {pool['images']} photos{pca}{kept})", "",
                  "| layers removed | output layer (width) | " + " | ".join(f"{k}-shot" for k in shots) + " |",
                  "|---|---|" + "---|" * len(shots)]
        for cut in grid["cuts"]:
            cells = {r["shots"]: format_cell(r) for r in grid["rows"] if r["removed"] == cut["removed"]}
            dim = next(r["dim"] for r in grid["rows"] if r["removed"] == cut["removed"])
            lines.append(f"| {cut['removed']} | `{cut['layer']}` ({dim}) | "
                         + " | ".join(cells.get(k, "–") for k in shots) + " |")
        lines.append("")
    for missing in report["unavailable"]:
        lines += [f"**{missing['name']}** (`{missing['arguments']}`): not measured here: {missing['error']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
