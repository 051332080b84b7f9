"""Load test of the search service on loopback: `--clients` concurrent clients for `--seconds` per scenario.

Starts `python -m serving.api --model M --index I` as its own process (embedding in-process, as a
single-machine deployment does), waits for /healthz, warms it up, then runs each scenario with
its clients sending one request after another over keep-alive connections (first `single`: one
client alone, the latency of one search over HTTP):

- `clean`: every client sends photo searches (`POST /search?k=10`, a multipart photo drawn,
  seeded, from the gallery's own images);
- `bad`: the same, with 25% of requests bad (not an image, truncated, a PNG with a bad
  checksum, k=0, k=Infinity, bad base64, malformed JSON, an unknown field), each of which must
  get its documented 4xx;
- `heavy`: 2 of the clients send the most expensive image the service accepts (a generated
  6324x6324 WebP, just under the 40-megapixel limit: a full decode costs 0.6-0.7 s of CPU), the
  others photo searches; with `good-only` (those other clients alone) as its reference.

A good search counts when it is a 200 with k results; anything else is an error. Latency is per
request, client-side. `--before REF` runs every scenario against the service as it was at git
commit REF too (a temporary `git worktree`), in the same run, for a before/after table. Last, the
in-process profile of one search by stage (`stage_profile`: Pillow, model, index, SQLite, JSON)
says what the model costs and what the service adds.

    python benchmarks/api_load.py --model demo/models/shop --index demo/index --before 963384f
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.common import header, host, write_report  # noqa: E402

SCENARIOS = ("clean", "bad", "heavy")


def multipart(image: bytes, fields: dict | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                 f"Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def heavy_image() -> bytes:
    """The most expensive image the service accepts by default: a 6324x6324 WebP (39,992,976 pixels)."""
    from PIL import Image

    side = 6324
    ramp = np.add.outer(np.arange(side) % 251, np.arange(side) % 241).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(ramp).convert("RGB").save(out, format="WEBP", quality=5, method=0)
    return out.getvalue()


def bad_requests(photo: bytes) -> list[tuple[str, bytes, str, int]]:
    """(path, body, content type, the documented status) of the bad requests mixed into `bad`."""
    import zlib

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(png, format="PNG")
    png = bytearray(png.getvalue())
    png[29:33] = (zlib.crc32(bytes(png[12:29])) ^ 1).to_bytes(4, "big")  # the IHDR checksum, off by one
    b64 = base64.b64encode(photo).decode()
    forms = [("not an image", b"just some text, not a photo", 415), ("truncated", photo[: len(photo) // 2], 422),
             ("bad checksum", bytes(png), 422)]
    out = [("/search?k=10", *multipart(data), status) for _, data, status in forms]
    out += [("/search?k=0", *multipart(photo), 422),
            ("/search", b'{"image_b64": "%s", "k": Infinity}' % b64.encode(), "application/json", 422),
            ("/search", b'{"image_b64": "%%%"}', "application/json", 400),
            ("/search", b'{"image_b64": ', "application/json", 400),
            ("/search", json.dumps({"image_b64": b64, "colour": "red"}).encode(), "application/json", 422)]
    return out


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.good, self.errors, self.bad_ok, self.bad_wrong, self.server_errors = [], [], 0, [], 0
        self.heavy: dict[int, int] = {}


def client(port: int, kind: str, photos: list[bytes], bad: list, heavy: bytes, k: int, deadline: float,
           rng: np.random.Generator, tally: Tally) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.perf_counter() < deadline:
        if kind == "heavy":
            path, (body, kind_header), expected = "/search?k=10", multipart(heavy), None
        elif kind == "mixed" and rng.random() < 0.25:
            path, body, kind_header, expected = bad[rng.integers(len(bad))]
        else:
            path, (body, kind_header), expected = f"/search?k={k}", multipart(photos[rng.integers(len(photos))]), 200
        start = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": kind_header})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        except (OSError, http.client.HTTPException) as error:
            with tally.lock:
                tally.errors.append(f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        with tally.lock:
            if response.status >= 500 and response.status != 503:
                tally.server_errors += 1
            if kind == "heavy":
                tally.heavy[response.status] = tally.heavy.get(response.status, 0) + 1
            elif expected == 200:
                try:
                    ok = response.status == 200 and len(json.loads(payload)["results"]) == k
                except (ValueError, KeyError):
                    ok = False
                if ok:
                    tally.good.append(elapsed)
                else:
                    tally.errors.append(f"HTTP {response.status}: {payload[:160]!r}")
            elif response.status == expected:
                tally.bad_ok += 1
            else:
                tally.bad_wrong.append(f"{path} expected {expected}, got {response.status}: {payload[:100]!r}")
    connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args, cwd: str) -> tuple[subprocess.Popen, int, dict]:
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": cwd}
    server = subprocess.Popen([sys.executable, "-m", "serving.api", "--model", os.path.abspath(args.model),
                               "--index", os.path.abspath(args.index), "--port", str(port),
                               "--batch-size", str(args.batch_size)], env=env, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    banner = server.stdout.readline().strip()
    for _ in range(600):
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            probe.request("GET", "/healthz")
            return server, port, json.loads(probe.getresponse().read())
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the service did not start: {banner}")


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return float("nan")


def run_scenario(port: int, kinds: list[str], photos, bad, heavy, args, seed) -> dict:
    tally = Tally()
    deadline = time.perf_counter() + args.seconds
    threads = [threading.Thread(target=client, args=(port, kind, photos, bad, heavy, args.k, deadline,
                                                     np.random.default_rng([seed, i]), tally))
               for i, kind in enumerate(kinds)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.array(tally.good) * 1000 if tally.good else np.full(1, np.nan)
    return {"clients": len(kinds), "good_clients": sum(k != "heavy" for k in kinds),
            "good": len(tally.good), "errors": len(tally.errors), "error_samples": tally.errors[:5],
            "bad_as_documented": tally.bad_ok, "bad_otherwise": len(tally.bad_wrong),
            "bad_samples": tally.bad_wrong[:5], "server_errors": tally.server_errors,
            "heavy": {str(s): n for s, n in sorted(tally.heavy.items())},
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "throughput": len(tally.good) / elapsed, "seconds": elapsed}


def load(args, code: str, cwd: str, photos, bad, heavy) -> list[dict]:
    """Every scenario against one server started from `cwd`: rows tagged with `code`."""
    server, port, health = start_server(args, cwd)
    rows = []
    try:
        warm = Tally()
        client(port, "good", photos, bad, heavy, args.k, time.perf_counter() + 3, np.random.default_rng(1), warm)
        plan = {"single": ["good"], "clean": ["good"] * args.clients, "bad": ["mixed"] * args.clients,
                "good-only": ["good"] * (args.clients - 2), "heavy": ["good"] * (args.clients - 2) + ["heavy"] * 2}
        for name in ["single"] + [s for scenario in args.scenarios
                                  for s in (("good-only", "heavy") if scenario == "heavy" else (scenario,))]:
            row = {"code": code, "scenario": name, **run_scenario(port, plan[name], photos, bad, heavy, args,
                                                                   [args.seed, len(rows)])}
            alive = server.poll() is None
            row["server_alive"] = alive
            rows.append(row)
            print(f"{code} {name}: {row['throughput']:.1f} good/s, p50 {row['p50_ms']:.0f} p95 {row['p95_ms']:.0f} "
                  f"p99 {row['p99_ms']:.0f} ms, {row['errors']} errors, {row['server_errors']} 5xx, bad as documented "
                  f"{row['bad_as_documented']}/{row['bad_as_documented'] + row['bad_otherwise']}, heavy {row['heavy']}",
                  file=sys.stderr)
            if not alive:
                break
        for row in rows:
            row["server_peak_rss_mb"] = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    rows[0]["health"] = health
    return rows


def stage_profile(args, photos: list[bytes], repeats: int = 300) -> dict:
    """Where one search's time goes, in this process, one request at a time: the median ms of each stage
    of `SearchService` (no HTTP), and of the model alone on a batch of `clients` images (per image)."""
    import json as json_module

    from serving.requests import parse_k
    from serving.service import SearchService
    from serving.settings import ApiSettings
    from serving.uploads import prepare, read_header

    service = SearchService(ApiSettings(model=args.model, index=args.index, batch_size=1))
    times: dict[str, list[float]] = {name: [] for name in ("check and decode (Pillow)", "model (1 image)",
                                                           "index search", "catalogue records (SQLite)",
                                                           "JSON encoding")}
    for i in range(repeats):
        data = photos[i % len(photos)]
        t0 = time.perf_counter()
        header = read_header(data, service.settings.max_pixels)
        model_data = prepare(header, service.input_size)
        t1 = time.perf_counter()
        vectors, _ = service.predictor.embed([model_data])
        t2 = time.perf_counter()
        results = service.gallery.search(vectors[0], parse_k(args.k, 12))
        t3 = time.perf_counter()
        answer = {"results": [service.present(r) for r in results]}
        t4 = time.perf_counter()
        json_module.dumps(answer)
        t5 = time.perf_counter()
        for name, (a, b) in zip(times, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
            times[name].append(b - a)
    batch = [prepare(read_header(p, service.settings.max_pixels), service.input_size) for p in photos[:args.clients]]
    batched = []
    for _ in range(max(20, repeats // 10)):
        t0 = time.perf_counter()
        service.predictor.embed(batch)
        batched.append((time.perf_counter() - t0) / len(batch))
    service.close()
    stages = {name: float(np.median(values) * 1000) for name, values in times.items()}
    stages[f"model, per image in a batch of {len(batch)}"] = float(np.median(batched) * 1000)
    return stages


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"### Search API under load (loopback): {s['model']}, {s['items']:,} items",
        "",
        f"Command: `{report['command']}`  ",
        f"{s['clients']} concurrent clients for {s['seconds']} s per scenario against `python -m serving.api "
        f"--batch-size {s['batch_size']}` (embedding in-process, `{s['backend']}` index of {s['items']:,} items, model "
        f"{s['model']}, input {s['input']}); client and server share the host "
        f"({host(report['machine'])}); wall time {report['wall_seconds']:.0f} s. `clean`: photo searches only; "
        "`bad`: 25% bad requests mixed in (each must get its documented 4xx); `heavy`: 2 clients send a 6324x6324 "
        "WebP (the most expensive image accepted), the other 6 search, against `good-only` (those 6 alone). "
        "Latencies and searches/s are the good searches'.",
        "",
        "| code | scenario | good searches/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors | 5xx | "
        "bad answered as documented | heavy answers | server peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "scenario" not in r:
            continue
        bad_total = r["bad_as_documented"] + r["bad_otherwise"]
        documented = f"{r['bad_as_documented']}/{bad_total}" if bad_total else "-"
        heavy = ", ".join(f"{n} x {code}" for code, n in r["heavy"].items()) or "-"
        lines.append(f"| {r['code']} | {r['scenario']} | {r['throughput']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
                     f"| {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['errors']} | {r['server_errors']} | "
                     f"{documented} | {heavy} | "
                     f"{r['server_peak_rss_mb']:.0f} |")
    single = next((r for r in report["rows"] if r.get("scenario") == "single" and r["code"] == "now"), None)
    if report.get("stages"):
        lines += ["", "Where one search's time goes (`now`, in-process, one request at a time, median ms):", "",
                  "| stage | ms |", "|---|---|"]
        lines += [f"| {name} | {ms:.2f} |" for name, ms in report["stages"].items()]
        if single:
            inside = sum(ms for name, ms in report["stages"].items() if not name.startswith("model, per image"))
            lines.append(f"| one search over HTTP, one client (p50) | {single['p50_ms']:.2f} |")
            lines.append(f"| of which HTTP, multipart and the framework | {single['p50_ms'] - inside:.2f} |")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export base path (models/NAME)")
    parser.add_argument("--index", required=True, help="gallery directory")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8; heavy uses 2 of them)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each scenario (default 20)")
    parser.add_argument("--scenarios", default="clean,bad,heavy",
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--k", type=int, default=10, help="results per search (default 10)")
    parser.add_argument("--batch-size", type=int, default=16, help="the service's --batch-size (default 16)")
    parser.add_argument("--before", metavar="REF", help="also run every scenario against the service at git REF")
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process per-stage profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "api_load"),
                        help="output path without extension: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if min(args.clients, args.k) < 1 or args.seconds <= 0 or ("heavy" in args.scenarios and args.clients < 3):
        parser.error("--clients and --k must be >= 1 (>= 3 clients for heavy) and --seconds > 0")

    from visnet.exporting import latest_version, read_metadata
    from visnet.index import Gallery

    gallery = Gallery.load(args.index)
    paths = [gallery.get(i)["image"] for i in gallery.ids()]
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(paths), size=min(500, len(paths)), replace=False)
    photos = [open(paths[i], "rb").read() for i in chosen]
    backend, items = type(gallery.index).name, len(gallery)
    del gallery
    spec = read_metadata(latest_version(args.model))["image_spec"]
    heavy = heavy_image() if "heavy" in args.scenarios else b""
    bad = bad_requests(photos[0])

    began = time.perf_counter()
    rows = []
    worktree = None
    try:
        if args.before:
            worktree = tempfile.mkdtemp(prefix="visnet-before-")
            subprocess.run(["git", "worktree", "add", "--detach", worktree, args.before], cwd=ROOT, check=True,
                           capture_output=True)
            rows += load(args, f"before ({args.before})", worktree, photos, bad, heavy)
        rows += load(args, "now", ROOT, photos, bad, heavy)
    finally:
        if worktree:
            subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT, capture_output=True)
            shutil.rmtree(worktree, ignore_errors=True)
    stages = stage_profile(args, photos) if not args.no_profile else {}
    health = next(r["health"] for r in rows if "health" in r)
    report = {
        **header("api_load", "benchmarks/api_load.py", argv if argv is not None else sys.argv[1:],
                 ("fastapi", "uvicorn")),
        "settings": {"clients": args.clients, "seconds": args.seconds, "k": args.k, "backend": backend,
                     "batch_size": args.batch_size, "scenarios": args.scenarios, "before": args.before,
                     "heavy_image_bytes": len(heavy), "items": items, "input": f"{spec['height']}x{spec['width']}",
                     "model": f"{health['model']['name']} v{health['model']['version']} ({health['arch']})"},
        "wall_seconds": round(time.perf_counter() - began, 1), "rows": rows, "stages": stages,
    }
    write_report(report, args.out, markdown)
    now = [r for r in rows if r["code"] == "now"]
    return 1 if any(r["errors"] or r["server_errors"] or not r["server_alive"] for r in now) else 0


if __name__ == "__main__":
    sys.exit(main())
