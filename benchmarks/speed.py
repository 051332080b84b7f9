"""The speed table: every measured throughput and latency of the loop in one place.

Measures nothing itself: it gathers what the measuring scripts wrote in `results/` (training
images/s through the input pipeline and as a bare fit on in-memory tensors, embedding
throughput per architecture from the quality table, the exported model, the search API and the
index), names the script and command behind each figure, and writes `results/speed.json` and
`.md`. Run it after them (`make benchmark` does); a missing source is listed, not invented.

    python benchmarks/speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, write_report  # noqa: E402

SOURCES = ("training_throughput", "quality", "export_throughput", "api_load", "index_search")


def gather(results_dir: str) -> dict:
    """The speed figures of each source report found in `results_dir` (name -> figures)."""
    found = {}
    for name in SOURCES:
        path = os.path.join(results_dir, name + ".json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                found[name] = json.load(handle)
    out = {"commands": {name: report["command"] for name, report in found.items()},
           "missing": [name for name in SOURCES if name not in found]}
    architectures = {}
    for row in found.get("training_throughput", {}).get("rows", []):
        architectures.setdefault(row["arch"], {}).update(
            train_pipeline=row["pipeline_images_per_second"], train_bare=row["bare_images_per_second"],
            train_batch=row["batch"], train_input="x".join(map(str, row["image_size"])))
    for row in found.get("quality", {}).get("rows", []):
        # quality names the open-set runs by their architecture, as training_throughput does
        architectures.setdefault(row["name"], {}).update(
            embed=round(row["embedded"] / max(row["embedding_seconds"], 1e-9), 1),
            embed_input="x".join(map(str, row["embedder"]["image_size"])), baseline=row["run"] is None)
    out["architectures"] = architectures
    if "export_throughput" in found:
        report = found["export_throughput"]
        out["export"] = {**report["results"], "run": report["settings"]["run"],
                         "batch_size": report["settings"]["batch_size"]}
    if "api_load" in found:
        api = found["api_load"]
        rows = [row for row in api["rows"] if row.get("code", "now") == "now" and row.get("scenario", "clean") == "clean"]
        out["api"] = [{**row, "batch_size": row.get("batch_size", api["settings"].get("batch_size"))} for row in rows]
    if "index_search" in found:
        out["index"] = [{k: row[k] for k in ("backend", "size", "latency_ms_median", "latency_ms_p99", "recall_at_10",
                                             "build_seconds")} for row in found["index_search"]["rows"]
                        if row.get("data", "mixture") == "mixture"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where the source reports are")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "speed"), help="output prefix")
    args = parser.parse_args(argv)
    report = {**header("speed", "benchmarks/speed.py", argv if argv is not None else sys.argv[1:]),
              **gather(args.results_dir)}
    if len(report["missing"]) == len(SOURCES):
        print(f"error: no source report in {args.results_dir}: run the measuring scripts first "
              f"({', '.join(SOURCES)})", file=sys.stderr)
        return 2
    write_report(report, args.out, markdown)
    return 0


def _number(value, digits: int = 0) -> str:
    return "–" if value is None else value if isinstance(value, str) else f"{value:,.{digits}f}"


def markdown(report: dict) -> str:
    lines = [f"### Speed at a glance ({report['machine']['cpus']} CPUs)", "",
             "Gathered by `python benchmarks/speed.py` from the measuring scripts' reports: "
             + "; ".join(f"`{command}`" for command in report["commands"].values()) + ".", ""]
    if report["architectures"]:
        lines += ["| embedder | training batch | training, pipeline (img/s) | training, bare fit on tensors (img/s) | "
                  "embedding from files (img/s) |", "|---|---|---|---|---|"]
        for name, row in report["architectures"].items():
            if row.get("baseline"):
                row = {**row, "train_pipeline": "no training", "train_bare": "no training"}
            batch = f"{row['train_batch']} at {row['train_input']}" if "train_batch" in row else "–"
            embed = f"{_number(row['embed'])} ({row['embed_input']})" if "embed" in row else "–"
            lines.append(f"| {name} | {batch} | {_number(row.get('train_pipeline'))} | "
                         f"{_number(row.get('train_bare'))} | {embed} |")
        lines += ["", "–: not measured (`benchmarks/training_throughput.py` covers the P x K architectures; the "
                  "training times of the others are in the quality table). Training: the sampler, decoding and "
                  "augmentation pipeline against the same batches already in memory. Embedding: `visnet.evaluate` "
                  "over every photo of the protocol, decoding and resizing included.", ""]
    if "export" in report:
        e = report["export"]
        lines += [f"Exported SavedModel (`{e['run']}`, batches of {e['batch_size']}): {e['saved_model']:.0f} "
                  f"embeddings/s from encoded bytes, against {e['keras']:.0f}/s for the Keras model on decoded "
                  "arrays.", ""]
    for row in report.get("api", []):
        lines.append(f"Search API, 8 clients, `--batch-size {row['batch_size']}`: {row['throughput']:.1f} "
                     f"searches/s, p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, {row['errors']} errors.")
    if report.get("api"):
        lines.append("")
    if "index" in report:
        sizes = sorted({row["size"] for row in report["index"]})
        backends = sorted({row["backend"] for row in report["index"]})
        lines += ["| index: median ms per query (recall@10) | " + " | ".join(f"{s:,} vectors" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for backend in backends:
            cells = {row["size"]: f"{row['latency_ms_median']:.2f} ({row['recall_at_10']:.3f})"
                     for row in report["index"] if row["backend"] == backend}
            lines.append(f"| `{backend}` | " + " | ".join(cells.get(s, "–") for s in sizes) + " |")
        lines.append("")
    if report["missing"]:
        lines += ["Not gathered (no report yet): " + ", ".join(report["missing"]) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
