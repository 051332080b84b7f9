"""A finished search as a table (CSV and Markdown: trial, hyperparameters, objective, epochs, wall time)
and a plot of the objective per trial (PNG)."""

from __future__ import annotations

import csv
import json
import os


def trial_rows(tuner) -> list[dict]:
    """One dict per trial, in trial order: id, status, objective, epochs, seconds, hyperparameters."""
    objective = tuner.oracle.objective.name
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: int(item[0])):
        summary_path = os.path.join(tuner.run_dir(trial_id), "trial.json")
        summary = json.load(open(summary_path, encoding="utf-8")) if os.path.exists(summary_path) else {}
        values = active_values(trial.hyperparameters)
        rows.append({"trial": trial_id, "status": trial.status, objective: trial.score,
                     "epochs": summary.get("epochs"), "seconds": summary.get("seconds"), **values})
    return rows


def active_values(hp) -> dict:
    """The hyperparameters a trial used (those of an inactive condition, e.g. top_k without top-k mining, left out)."""
    return {name: value for name, value in hp.values.items() if not name.startswith("tuner/") and hp.is_active(name)}


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(rows: list[dict], objective: str, out_dir: str) -> tuple[str, str]:
    """results.csv and results.md in `out_dir`; the best trial is marked in the Markdown."""
    columns = ["trial", "status", objective, "epochs", "seconds"]
    columns += sorted({key for row in rows for key in row} - set(columns))
    csv_path, md_path = os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.md")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    scored = [row for row in rows if row.get(objective) is not None]
    best = max(scored, key=lambda row: row[objective])["trial"] if scored else None
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_format(row.get(column)) for column in columns]
        if row["trial"] == best:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    with open(md_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_objective(rows: list[dict], objective: str, path: str, baseline: float | None = None) -> str:
    """The objective of each trial (and the best so far) as a PNG."""
    from visnet.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    scored = [(int(row["trial"]), row[objective]) for row in rows if row.get(objective) is not None]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if scored:
        trials, values = zip(*scored)
        best = [max(values[: i + 1]) for i in range(len(values))]
        axes.plot(trials, values, "o", label=objective)
        axes.step(trials, best, where="post", label="best so far")
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle="--", label="defaults")
    axes.set_xlabel("trial")
    axes.set_ylabel(objective)
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)
