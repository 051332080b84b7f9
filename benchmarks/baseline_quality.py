"""Quality of a training-free baseline (HOG, raw pixels) on the benchmark protocol.

Runs the exact command users run, `python -m visnet.evaluate`, several times; records its
figures (identical from run to run: the protocol and episodes are seeded), the median wall
time, the machine and the library versions; writes `results/<embedder>.json` and `.md`.

    python benchmarks/baseline_quality.py --data ../shared/data/fashion-products --embedder hog --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import machine, versions  # noqa: E402


def markdown(report: dict) -> str:
    sys.path.insert(0, os.path.dirname(HERE))
    from visnet.evaluation.benchmark import format_results

    r = report["results"]
    lines = [
        f"### {report['embedder']} baseline on `{r['protocol']}`",
        "",
        f"Command: `{report['command']}`  ",
        f"Wall time: median {report['median_wall_seconds']:.1f} s over {len(report['wall_seconds'])} runs "
        f"({', '.join(f'{s:.1f}' for s in report['wall_seconds'])} s) on {report['machine']['cpus']} CPUs, "
        f"TensorFlow {report['versions']['tensorflow']}, OpenCV {report['versions']['opencv-python-headless']}.",
        "",
        format_results(r, markdown=True).strip(),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="benchmark folder (manifest.csv + protocol.json)")
    parser.add_argument("--embedder", default="hog", help="hog or pixels (default hog)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--extra", default="", help="extra arguments for visnet.evaluate, quoted")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"), help="where JSON and Markdown go")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the Markdown from the existing JSON (no runs)")
    args = parser.parse_args(argv)
    base = os.path.join(args.out_dir, args.embedder)
    if args.render:
        with open(base + ".json") as handle:
            report = json.load(handle)
        with open(base + ".md", "w") as handle:
            handle.write(markdown(report))
        return 0
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        command = ["python", "-m", "visnet.evaluate", "--embedder", args.embedder, "--data", args.data,
                   *shlex.split(args.extra)]
        walls, results = [], None
        for run in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, *command[1:], "--no-progress", "--out", out],
                                  capture_output=True, text=True)
            walls.append(round(time.perf_counter() - start, 2))
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            current = json.load(open(out))
            figures = {k: current[k] for k in ("closed_set", "open_set", "few_shot")}
            if results is not None and figures != {k: results[k] for k in figures}:
                print("figures differ between runs: the evaluation is not deterministic", file=sys.stderr)
                return 1
            results = current
            print(f"run {run + 1}/{args.runs}: {walls[-1]:.1f}s", file=sys.stderr)

    report = {
        "benchmark": "baseline_quality",
        "embedder": args.embedder,
        "command": " ".join(shlex.quote(c) for c in command),
        "wall_seconds": walls,
        "median_wall_seconds": statistics.median(walls),
        "machine": machine(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(base + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    with open(base + ".md", "w") as handle:
        handle.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
