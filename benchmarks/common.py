"""What every benchmark script records and how it writes its results (JSON + Markdown)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata


def versions(extra: tuple[str, ...] = ()) -> dict:
    """Python and package versions (None when not installed); `extra` adds package names."""
    names = ["visnet", "tensorflow", "keras", "numpy", "scikit-learn", "opencv-python-headless", *extra]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpuinfo() -> tuple[str | None, set[str]]:
    """(CPU model name, feature flags) from /proc/cpuinfo (Linux), or (None, empty) elsewhere."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def machine() -> dict:
    """The host a figure was measured on: hosts of one kind differ 3-4x in training speed, so every
    report names the CPU model, the cores this process may use, its vector extensions, and the
    allocator and thread settings in effect."""
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": model or platform.processor() or platform.machine(), "cpus": usable,
            "cpus_online": os.cpu_count(), "avx2": "avx2" in flags,
            "avx512": any(f.startswith("avx512") for f in flags),
            "avx512_flags": sorted(f for f in flags if f.startswith("avx512")),
            "settings": {k: os.environ[k] for k in ("LD_PRELOAD", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                                   "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS", "MALLOC_ARENA_MAX")
                         if k in os.environ}}


def host(report_machine: dict) -> str:
    """A short name of the host for tables and notes: `AMD EPYC, 2 CPUs, AVX2, no AVX-512`."""
    m = report_machine or {}
    vector = "AVX-512" if m.get("avx512") else ("AVX2, no AVX-512" if m.get("avx2") else "no AVX2")
    if "avx512" not in m:  # reports written before the host was recorded
        return f"{m.get('cpus', '?')} CPUs (host not recorded)"
    return f"{m.get('cpu_model') or 'unknown CPU'}, {m.get('cpus')} CPUs, {vector}"


def header(name: str, script: str, argv: list[str], extra_versions: tuple[str, ...] = ()) -> dict:
    """The fields every report starts with: benchmark name, the command as typed, date, machine, versions."""
    command = ["python", script, *argv]
    return {"benchmark": name, "command": " ".join(shlex.quote(c) for c in command),
            "date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": versions(extra_versions)}


def write_report(report: dict, out: str, markdown: Callable[[dict], str]) -> None:
    """Writes OUT.json and OUT.md (`out` without extension) and prints the Markdown."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    text = markdown(report)
    with open(out + ".md", "w") as handle:
        handle.write(text)
    print(text)


def run_python(arguments: list[str], cwd: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Runs `python ARGUMENTS` with this interpreter, capturing its output; (the process, wall seconds)."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, cwd=cwd)
    return done, time.perf_counter() - began


def last_line(text: str, default: str) -> str:
    """The last non-empty line of a process's stderr (its error message), or `default`."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


def parse_runs(parser, items: list[str], default_size=None) -> list[tuple[str, str, tuple | None]]:
    """`--run NAME=PATH[@HxW]` values as (name, run directory, input size or `default_size`); PATH may
    join several run directories with `+` (one model, `visnet.training.runs.open_run`). A malformed one is a parser error
    naming it."""
    from visnet.data.image_spec import parse_size

    runs = []
    for item in items:
        name, sep, path = item.partition("=")
        path, at, run_size = path.partition("@")
        if not sep or not name or not all(os.path.isdir(p) for p in path.split("+")):
            parser.error(f"--run takes NAME=PATH[@HxW] of a run directory (or several joined by +). Received: {item!r}")
        try:
            runs.append((name, path, parse_size(run_size) if at else default_size))
        except ValueError as error:
            parser.error(f"--run {item!r}: {error}")
    return runs


def merge_report(report: dict, earlier: dict | None) -> dict:
    """`report` with its rows merged into those of the `earlier` report (`--merge`, `earlier_report`):
    an earlier row of the same name and input size is replaced where it stands, new rows follow, and
    `calls` lists every command so far with its wall time (see `commands_text`)."""
    this_call = [{"command": report["command"], "wall_seconds": report["wall_seconds"]}]
    if earlier is None:
        return {**report, "calls": this_call}

    def key(row):
        return row["name"], tuple(row["image_size"] or ())

    fresh = {key(row): row for row in report["rows"]}
    rows = [fresh.pop(key(row), row) for row in earlier["rows"]]
    rows += [row for row in report["rows"] if key(row) in fresh]
    calls = earlier.get("calls") or [{"command": earlier["command"], "wall_seconds": earlier["wall_seconds"]}]
    return {**report, "rows": rows, "calls": calls + this_call}


def commands_text(report: dict) -> str:
    """`Command: `...` on HOST, N s`, or for merged reports every call in order."""
    where = host(report["machine"])
    calls = report.get("calls") or []
    if len(calls) < 2:
        return f"Command: `{report['command']}` on {where}, {report['wall_seconds']:.0f} s"
    listed = ", then ".join(f"`{c['command']}` ({c['wall_seconds']:.0f} s)" for c in calls)
    return f"Commands: {listed}, on {where}"


def add_run_arguments(parser, default_out: str, imagenet_classes: bool = True) -> None:
    """`--data`, `--run NAME=PATH[@HxW]` (repeatable), `--image-size`, `--chosen-by`, `--merge`, `--out`
    and (unless `imagenet_classes` is False) `--imagenet-classes`: the arguments of the scripts that
    choose a setting on each trained run's validation classes."""
    from visnet.cli import size

    parser.add_argument("--data", required=True, help="the fashion-products folder")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=PATH[@HxW]",
                        help="a trained run (repeatable), optionally run at input size HxW; its validation classes "
                             "choose the setting. PATH+PATH: several runs as one model (their embeddings side by "
                             "side), which takes its setting from --chosen-by")
    parser.add_argument("--image-size", type=size, metavar="HxW", help="run the models at this input size "
                        "(default: each run's own; NAME=PATH@HxW sets one run's)")
    parser.add_argument("--chosen-by", action="append", default=[], metavar="NAME=OTHER",
                        help="runs named NAME (trained without validation classes, val none) take the setting "
                             "chosen for the latest earlier --run named OTHER (repeatable)")
    if imagenet_classes:
        parser.add_argument("--imagenet-classes", action="append", default=[], metavar="NAME=S[@HxW]",
                            help="the run named NAME gets the ImageNet class embedding beside its own, with share S "
                                 "of the squared distance, the classifier seeing HxW (visnet.models.imagenet_classes; "
                                 "repeatable)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of OUT.json that this call does not redo (same name and input size)")
    parser.add_argument("--out", default=default_out, help="output prefix")


def parse_imagenet_classes(parser, items: list[str], runs: list[tuple]) -> dict:
    """`--imagenet-classes NAME=S[@HxW]` values as {NAME: ImageNetClasses}; NAME must name a --run. A bad
    value is a parser error naming it."""
    from visnet.data.image_spec import parse_size
    from visnet.models.imagenet_classes import ImageNetClasses

    names = [name for name, _, _ in runs]
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        share, at, size = value.partition("@")
        if not sep or name not in names:
            parser.error(f"--imagenet-classes takes NAME=S[@HxW] with NAME a --run name ({', '.join(names)}). "
                         f"Received: {item!r}")
        if name in out:
            parser.error(f"--imagenet-classes names the run {name!r} twice. Received: {item!r}")
        try:
            out[name] = ImageNetClasses(float(share), parse_size(size) if at else None)
        except ValueError as error:
            parser.error(f"--imagenet-classes {item!r}: {error}")
    return out


def parse_chosen_by(parser, items: list[str], runs: list[tuple], earlier: list[dict] = ()) -> dict[str, str]:
    """`--chosen-by NAME=OTHER` values as {NAME: OTHER}; NAME must name a run, OTHER a run before it or a
    row of `earlier` (the rows of the report merged into, `earlier_report`). A bad value is a parser error."""
    names = [name for name, _, _ in runs]
    measured = {row["name"] for row in earlier}
    sources = {}
    for item in items:
        name, sep, other = item.partition("=")
        if not sep or name not in names or (other not in names and other not in measured) or name == other:
            listed = ", ".join(names) + (f"; rows merged into: {', '.join(sorted(measured))}" if measured else "")
            parser.error(f"--chosen-by takes NAME=OTHER, two different --run names (runs: {listed}). "
                         f"Received: {item!r}")
        if other in names and names.index(other) > names.index(name):
            parser.error(f"--chosen-by {item!r}: the --run named {other!r} must come before the one named {name!r}")
        sources[name] = other
    return sources


def earlier_report(args) -> dict | None:
    """With `--merge`, the report merged into (`OUT.json`), read once; else (or without one) None."""
    if not args.merge or not os.path.exists(args.out + ".json"):
        return None
    with open(args.out + ".json") as handle:
        return json.load(handle)


def model_name(row: dict) -> str:
    """A row's name, with the ImageNet class embedding it had beside it (`--imagenet-classes`), if any."""
    classes = row.get("imagenet_classes")
    if not classes:
        return row["name"]
    size = "@{}x{}".format(*classes["image_size"]) if classes.get("image_size") else ""
    return f"{row['name']} (ImageNet classes {classes['share']:g}{size})"


def chosen_on(row: dict) -> str:
    """Where a row's setting was chosen: its own validation classes, or another run's."""
    return f"validation of {row['chosen_by']}" if row.get("chosen_by") else "validation"


def embed_for_choice(parser, rows: list[dict], sources: dict[str, str], name: str, path: str, image_size,
                     imagenet=None):
    """(embedder, source, vectors, labels) of a run's best checkpoint (with `imagenet`, an
    `ImageNetClasses`, the class embedding beside it): for a run named in `--chosen-by`, `source` is
    the latest of `rows` (those merged into, then this call's) measured for the run it names (whose
    chosen setting it takes) and there are no validation vectors; otherwise `source` is None and the
    vectors and labels are those of its own validation classes."""
    if name in sources:
        from visnet.training.runs import open_run

        source = [row for row in rows if row["name"] == sources[name]][-1]
        return open_run(path.split("+")).embedder("best", image_size=image_size, imagenet=imagenet), source, None, None
    embedder, vectors, labels = validation_embeddings(parser, path, image_size, imagenet)
    return embedder, None, vectors, labels


def validation_embeddings(parser, path: str, image_size, imagenet=None):
    """(embedder, vectors, labels) of a run's best checkpoint (see `embed_for_choice`) on its own
    validation classes; a run without validation classes is a parser error."""
    import numpy as np

    from visnet.evaluation.embedding import embed_dataset
    from visnet.training.data import read_training_data
    from visnet.training.runs import Run

    if "+" in path:
        parser.error(f"the runs {path} as one model have no validation classes of their own: nothing to choose "
                     "settings on (--chosen-by NAME=OTHER takes another run's)")
    run = Run(path)
    embedder = run.embedder("best", image_size=image_size, imagenet=imagenet)
    data = read_training_data(run.config, progress=False)
    if data.val is None:
        parser.error(f"the run {path} has no validation classes (val=none): nothing to choose settings on "
                     "(--chosen-by NAME=OTHER takes another run's)")
    records, vectors = embed_dataset(embedder, data.val, progress=False)
    return embedder, vectors, np.array([r.label for r in records])


def at_k(figures: dict, k: int) -> float:
    """figures[k], whether the keys are ints (fresh) or strings (read back from JSON)."""
    return figures[k] if k in figures else figures[str(k)]
