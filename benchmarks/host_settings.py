"""Does the allocator or the thread setting recover training speed on a host? One training step
of the README's siamese recipe (ResNet-18 of width 64 at 128x96, batch 128, normalised softmax),
on in-memory tensors, in a fresh process per setting: images/s, user and system CPU time, and
minor page faults per step.

On a host where training ran at a quarter of the README's speed with 7 min of system time per
17 min of user time and tens of millions of minor page faults, the suspects are glibc malloc
handing large tensors back to the kernel (mmap / munmap on every step: each page faults in
again) and thread oversubscription. The settings tried:

- `default`: what `python -m visnet.train` gets;
- `glibc-no-trim`: `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` raised so freed tensors
  stay in the process (glibc's own knobs, no new library);
- `jemalloc`, `tcmalloc`: `LD_PRELOAD` of Debian's `libjemalloc2` / `libtcmalloc-minimal4`
  (skipped, and said so, when not installed);
- `threads-2x1`: intra-op threads = the cores, inter-op 1; `threads-1x1`: one thread (the
  floor: what two processes sharing the cores would each get);
- `onednn-off`: `TF_ENABLE_ONEDNN_OPTS=0` (TensorFlow's own kernels instead of oneDNN's).

    python benchmarks/host_settings.py --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import header, host, write_report  # noqa: E402

LIBRARIES = {
    "jemalloc": ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"],
    "tcmalloc": ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                 "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"],
}
NO_TRIM = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
           "MALLOC_TOP_PAD_": str(1 << 28)}
SETTINGS = {
    "default": ({}, None),
    "glibc-no-trim": (NO_TRIM, None),
    "jemalloc": ({}, "jemalloc"),
    "tcmalloc": ({}, "tcmalloc"),
    "threads-2x1": ({"VISNET_BENCH_THREADS": "cores,1"}, None),
    "threads-1x1": ({"VISNET_BENCH_THREADS": "1,1"}, None),
    "onednn-off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, None),
}


def child(steps: int, batch: int) -> dict:
    """Runs in the measured process: warm-up, then `steps` timed training steps."""
    threads = os.environ.get("VISNET_BENCH_THREADS")
    import numpy as np
    import tensorflow as tf

    if threads:
        intra, inter = threads.split(",")
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() if intra == "cores" else int(intra))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter))
    import keras

    from visnet.layers import CosineClassifier
    from visnet.losses import losses
    from visnet.models import build

    keras.utils.set_random_seed(0)
    model = build("siamese", input_shape=(128, 96, 3), backbone="resnet18", backbone_options={"width": 64},
                  embedding_dim=128)
    head = CosineClassifier(88, name="proxies")(model.output)
    model = keras.Model(model.inputs, {"embedding": model.output, "cosines": head})
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"embedding": None, "cosines": losses.get({"name": "normsoftmax", "scale": 16.0})})
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, 128, 96, 3)).astype("float32")
    y = rng.integers(0, 88, batch)
    for _ in range(2):
        model.train_on_batch(x, {"embedding": y, "cosines": y})
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, {"embedding": y, "cosines": y})
    wall, after = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    return {"images_per_second": round(steps * batch / wall, 2), "wall_seconds": round(wall, 2),
            "user_seconds": round(after.ru_utime - before.ru_utime, 2),
            "system_seconds": round(after.ru_stime - before.ru_stime, 2),
            "minor_faults_per_step": round((after.ru_minflt - before.ru_minflt) / steps),
            "tensorflow_threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                                   "inter": tf.config.threading.get_inter_op_parallelism_threads()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per setting (default 8)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128, the recipe's P x K)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the settings, alternated (default 2)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "host_settings"), help="output prefix")
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.steps, args.batch)))
        return 0
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    began = time.perf_counter()
    results: dict[str, list] = {n: [] for n in names}
    skipped = {}
    for _ in range(args.repeats):
        for name in names:
            env_extra, library = SETTINGS[name]
            env = {**os.environ, **env_extra, "TF_CPP_MIN_LOG_LEVEL": "2"}
            if library:
                found = next((p for p in LIBRARIES[library] if os.path.exists(p)), None)
                if found is None:
                    skipped[name] = f"{library} is not installed (Debian: apt-get install " \
                                    f"{'libjemalloc2' if library == 'jemalloc' else 'libtcmalloc-minimal4'})"
                    continue
                env["LD_PRELOAD"] = found
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--steps", str(args.steps),
                                   "--batch", str(args.batch)], capture_output=True, text=True, env=env)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if done.returncode or line is None:
                skipped[name] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                continue
            results[name].append(json.loads(line[len("RESULT "):]))
            print(f"{name}: {results[name][-1]['images_per_second']} img/s", file=sys.stderr)
    rows = []
    for name in names:
        passes = results[name]
        if not passes:
            continue
        best = max(passes, key=lambda r: r["images_per_second"])
        rows.append({"setting": name, "environment": {**SETTINGS[name][0]}, "library": SETTINGS[name][1],
                     "passes": passes, "images_per_second": sorted(r["images_per_second"] for r in passes),
                     "best": best})
    report = {**header("host_settings", "benchmarks/host_settings.py", argv if argv is not None else sys.argv[1:]),
              "steps": args.steps, "batch": args.batch, "rows": rows, "skipped": skipped,
              "wall_seconds": round(time.perf_counter() - began, 1)}
    write_report(report, args.out, markdown)
    return 0


def markdown(report: dict) -> str:
    base = next((r for r in report["rows"] if r["setting"] == "default"), None)
    lines = ["### Allocator and thread settings against training speed", "",
             f"Command: `{report['command']}` on {host(report['machine'])}: {report['steps']} training steps of "
             f"the siamese recipe (ResNet-18 w64, 128x96, batch {report['batch']}) on in-memory tensors, a fresh "
             "process per setting, settings alternated; the best pass of each.", "",
             "| setting | img/s (passes) | relative to default | user s | system s | minor faults / step |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        b = r["best"]
        relative = f"{b['images_per_second'] / base['best']['images_per_second']:.2f}" if base else "–"
        lines.append(f"| `{r['setting']}` | {b['images_per_second']:.1f} ({', '.join(f'{v:.1f}' for v in r['images_per_second'])}) "
                     f"| {relative} | {b['user_seconds']:.1f} | {b['system_seconds']:.1f} | {b['minor_faults_per_step']:,} |")
    for name, why in report["skipped"].items():
        lines.append(f"\n`{name}` not measured: {why}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
