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


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count()}


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
