"""The quality table: every architecture and baseline on the benchmark protocol, one command.

Runs the command users run, `python -m visnet.evaluate`, once per entry below (the baselines,
and every trained run found under `--runs-dir`), and tabulates closed-set 1-NN accuracy,
open-set mAP and Recall@K, the N-way K-shot grid on the novel classes (nearest prototype, 600
seeded episodes), embedding throughput (decoding included) and each evaluation's wall and CPU
time. Training settings and times come from each run's own files. Runs that are missing are
listed with the script that makes them, not silently dropped.

    python benchmarks/quality.py --data ../shared/data/fashion-products
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, last_line, run_python, write_report  # noqa: E402

#: (name, evaluate arguments, run directory or None, the script that trains the run).
ENTRIES = (
    ("HOG", ["--embedder", "hog"], None, None),
    ("raw pixels (32x24)", ["--embedder", "pixels"], None, None),
    ("siamese", [], "siamese", "metric_learning.py"),
    ("siamese + HOG (0.8)", ["--hog-weight", "0.8"], "siamese", "metric_learning.py"),
    ("hybrid", [], "hybrid", "metric_learning.py"),
    ("visnet", [], "visnet", "metric_learning.py"),
    ("capsule", [], "capsule", "metric_learning.py"),
    ("weakly (from scratch)", [], "weakly", "weak_labels.py"),
    ("weakly (siamese trunk)", [], "weakly-siamese-trunk", "weak_labels.py --recipe siamese-trunk"),
    ("protonet", [], "protonet-fewshot", "maml_fewshot.py"),
    ("maml", [], "maml-fewshot", "maml_fewshot.py"),
)
GRID = [(5, 1), (5, 5), (10, 1), (10, 5), (16, 1), (16, 5)]


def run_summary(path: str) -> dict:
    """Architecture, input, trunk, parameters, epochs and training time of a run directory."""
    config = json.load(open(os.path.join(path, "config.json")))
    info = json.load(open(os.path.join(path, "run.json")))
    history = json.load(open(os.path.join(path, "state.json")))["history"]
    timed = [epoch["epoch_seconds"] for epoch in history if "epoch_seconds" in epoch]
    spec = info["image_spec"]
    return {"arch": config["arch"], "input": f"{spec['height']}x{spec['width']}", "backbone": config.get("backbone"),
            "backbone_options": config.get("backbone_options"), "loss": info.get("loss"),
            "parameters": info.get("parameters"), "epochs": len(history),
            "train_seconds": round(sum(timed), 1) if len(timed) == len(history) else None}


def evaluate(data: str, arguments: list[str], episodes: int) -> dict:
    """One `visnet.evaluate` run: its results, wall time and CPU time (user + system, all threads).

    A failed run gives {"error": its last stderr line} instead of results.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done, wall = run_python(["-m", "visnet.evaluate", "--data", data, *arguments, "--episodes", str(episodes),
                                 "--no-progress", "--out", out], cwd=os.path.dirname(HERE))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            return {"error": last_line(done.stderr, f"exit {done.returncode}"), "wall_seconds": round(wall, 1)}
        results = json.load(open(out))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"results": results, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="benchmark folder (manifest.csv + protocol.json)")
    parser.add_argument("--runs-dir", default=os.path.join(HERE, "runs"), help="where the trained runs are")
    parser.add_argument("--only", help="comma-separated entry names to run (default: all)")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per few-shot cell (default 600)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "quality"), help="output prefix")
    parser.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json (no runs)")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.out + ".json") as handle:
            report = json.load(handle)
        with open(args.out + ".md", "w") as handle:
            handle.write(markdown(report))
        return 0
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    wanted = None if not args.only else {n.strip() for n in args.only.split(",")}
    names = [entry[0] for entry in ENTRIES]
    if wanted and wanted - set(names):
        parser.error(f"unknown entries {sorted(wanted - set(names))}; choose from {names}")

    began = time.perf_counter()
    rows, missing, failed = [], [], []
    for name, arguments, run_name, script in ENTRIES:
        if wanted and name not in wanted:
            continue
        run = None
        if run_name:
            path = os.path.join(args.runs_dir, run_name)
            if not os.path.exists(os.path.join(path, "best.keras")):
                missing.append({"name": name, "run": path, "made_by": f"benchmarks/{script}"})
                print(f"skipped {name}: no run at {path} (benchmarks/{script} makes it)", file=sys.stderr)
                continue
            arguments = ["--run", path, *arguments]
            run = run_summary(path)
        measured = evaluate(args.data, arguments, args.episodes)
        shown = [a if not a.startswith(args.runs_dir) else os.path.join("runs", os.path.relpath(a, args.runs_dir))
                 for a in arguments]
        if "error" in measured:
            failed.append({"name": name, "arguments": " ".join(shlex.quote(a) for a in shown),
                           "error": measured["error"]})
            print(f"{name} failed: {measured['error']}", file=sys.stderr)
            continue
        r = measured["results"]
        rows.append({"name": name, "arguments": " ".join(shlex.quote(a) for a in shown), "run": run,
                     "wall_seconds": measured["wall_seconds"], "cpu_seconds": measured["cpu_seconds"],
                     "embedded": r["counts"]["embedded"], "embedding_seconds": r["seconds"]["embedding"],
                     "closed_set": r["closed_set"], "open_set": r["open_set"], "few_shot": r["few_shot"],
                     "notes": r.get("notes", []), "embedder": r["embedder"]})
        print(f"{name}: mAP {r['open_set'].get('mAP', float('nan')):.3f}, {measured['wall_seconds']:.0f} s",
              file=sys.stderr)
    report = {**header("quality", "benchmarks/quality.py", argv if argv is not None else sys.argv[1:]),
              "episodes": args.episodes, "rows": rows, "missing": missing, "failed": failed,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    write_report(report, args.out, markdown)
    return 1 if failed else 0


def _cell(row: dict, ways: int, shots: int) -> str:
    from visnet.evaluation.fewshot import format_cell

    for r in row["few_shot"]:
        if r["ways"] == ways and r["shots"] == shots and r["classifier"] == "prototype":
            return format_cell(r)
    return "–"


def _figure(section: dict, *keys, form: str = "{:.3f}") -> str:
    """A figure of the results, or n/a when the protocol had no such section (e.g. no open set)."""
    value = section
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "n/a"
        value = value[key]
    return form.format(value)


def _training(run: dict | None) -> str:
    if run is None:
        return "none"
    trunk = run["backbone"] or "own"
    width = (run["backbone_options"] or {}).get("width")
    trunk += f" w{width}" if width else ""
    took = "time not logged" if run["train_seconds"] is None else f"{run['train_seconds'] / 60:.0f} min"
    return f"{run['input']}, {trunk}, {run['parameters'] / 1e6:.2f} M params, {run['epochs']} epochs, {took}"


def markdown(report: dict) -> str:
    rows = report["rows"]
    sizes = next((row["open_set"] for row in rows if "query" in row["open_set"]), {})
    open_set = (f"the protocol's novel classes ({sizes['query']} queries against {sizes['support']} gallery photos)"
                if sizes else "the protocol's novel classes")
    lines = [
        "### Quality: every architecture and baseline on the benchmark protocol",
        "",
        f"Command: `{report['command']}` ({report['wall_seconds'] / 60:.0f} min on {report['machine']['cpus']} CPUs). "
        f"Each row is `python -m visnet.evaluate --data DATA ARGUMENTS`; open-set figures are on {open_set}, "
        f"few-shot on their pool with nearest prototype ({report['episodes']} seeded episodes, 15 queries per "
        "class, mean ± 95% interval).",
        "",
        "| embedder | arguments | closed-set 1-NN | mAP | R@1 | R@5 | embedding img/s | evaluation wall / CPU | training |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        o, c = row["open_set"], row["closed_set"]
        closed = _figure(c, "knn_accuracy", "1", form="{:.1%}") + ("*" if row["run"] and row["notes"] else "")
        speed = row["embedded"] / max(row["embedding_seconds"], 1e-9)
        lines.append(f"| {row['name']} | `{row['arguments']}` | {closed} | {_figure(o, 'mAP')} | "
                     f"{_figure(o, 'recall', '1')} | {_figure(o, 'recall', '5')} | {speed:.0f} | "
                     f"{row['wall_seconds']:.0f} s / {row['cpu_seconds']:.0f} s | {_training(row['run'])} |")
    lines += ["", "\\* Not held out: the run trained on the base classes, whose closed-set test photos were among its "
              "training images (its open-set and few-shot figures are held out).", "",
              "**N-way K-shot accuracy on the novel classes (nearest prototype)**", "",
              "| embedder | " + " | ".join(f"{w}-way {s}-shot" for w, s in GRID) + " |",
              "|---|" + "---|" * len(GRID)]
    for row in rows:
        lines.append(f"| {row['name']} | " + " | ".join(_cell(row, w, s) for w, s in GRID) + " |")
    lines += ["", "Every row uses nearest prototype on its embedding; MAML's own rule (adapting the network on "
              "each support set) is in the MAML table below. `protonet` and `maml` are the small conv-4 runs of "
              "that comparison; the others are the open-set runs of the metric-learning and weak-label tables."]
    if report["missing"]:
        lines += ["", "Not measured (no trained run): " + ", ".join(
            f"{m['name']} (`{m['made_by']}` trains it)" for m in report["missing"]) + "."]
    for failure in report.get("failed", []):
        lines += ["", f"**{failure['name']}** (`{failure['arguments']}`) failed: {failure['error']}"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
