"""The search service: `python -m serving.api --model models/NAME --index index/ [--tf-serving HOST:PORT]`.

Endpoints (OpenAPI at `/openapi.json`):

    GET  /                  the web page: drop a photo (or type words) and see the nearest products
    POST /search            an image (multipart field `image`, or JSON {"image_b64": ...}); ?k= (1-100)
    POST /search/text       JSON {"text": "navy striped shirt", "k": 10} (weak-label models)
    GET  /items/{id}        a catalogue record;  GET /items/{id}/image  its photo
    POST /items             add a product: multipart (image + id, label, text, labels JSON) or JSON
    PUT  /items/{id}        change its fields and/or photo;  DELETE /items/{id}
    GET  /healthz           status, model, item count;  GET /metrics  Prometheus text format

Embeddings come from TF Serving over gRPC when `--tf-serving` is given, else from the exported
SavedModel in this process. Writes need the API key (`--api-key` or the VISNET_API_KEY
environment variable) in an `X-API-Key` header; reads are open. Every write is saved to the
index directory (atomically) before it is acknowledged, or with `--save-interval S` every S
seconds and at shutdown. Bad input gets a JSON 4xx
`{"error": ...}`: bodies over the size limit (413), files that are not images (415), images over
the pixel limit (413, read from the header before decoding), damaged images (422), large images
past the large-image lane's CPU budget (503 with Retry-After).

The pieces: `serving.app` (routes and HTTP answers), `serving.service` (the work), `serving.requests`
(what a request may contain), `serving.uploads` and `serving.budget` (a photo, decoded at a bounded
cost), `serving.settings`; this module is the command line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time

from serving.app import create_app
from serving.requests import MAX_K, ApiError
from serving.service import SearchService
from serving.settings import ApiSettings

__all__ = ["ApiError", "ApiSettings", "SearchService", "build_parser", "check", "create_app", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the export's base path, models/NAME (visnet.export)")
    parser.add_argument("--index", required=True, help="the gallery directory (python -m visnet.index build)")
    parser.add_argument("--tf-serving", metavar="HOST:PORT",
                        help="embed through TF Serving's gRPC API (default: the SavedModel in this process)")
    parser.add_argument("--backend", default="brute",
                        help="index backend of a new, empty gallery (default brute); milvus keeps the vectors in "
                             "Milvus Lite inside --index, milvus:URI in a Milvus file or server (http://host:19530)")
    parser.add_argument("--api-key", help="key for write requests (default: $VISNET_API_KEY; none: writes disabled)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body in MB (default 10)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image, width x height (default 40,000,000)")
    parser.add_argument("--default-k", type=int, default=12, help=f"results when a request gives no k (default 12, "
                                                                  f"at most {MAX_K})")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="concurrent photo searches embedded in one model call, up to this many images "
                             "(default 16; 1: no batching)")
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0,
                        help="longest wait for more searches to batch with a waiting one (default 2)")
    parser.add_argument("--large-image-pixels", type=int, default=2_000_000,
                        help="images whose decode makes more pixels than this (JPEGs after DCT scaling) take the "
                             "large-image lane: one at a time, at low CPU priority (default 2,000,000)")
    parser.add_argument("--large-image-cpu", type=float, default=0.25,
                        help="share of one core the large-image lane may spend on average; past it large images "
                             "are answered 503 with Retry-After (default 0.25)")
    parser.add_argument("--expansion", default="none", metavar="qe=K[,alpha=A]",
                        help="query expansion of photo searches: each query plus its K nearest products (weights "
                             "cos**A), searched again; qe=1 measured +0.006 to +0.014 mAP at the same Recall@1 (README, "
                             "Re-ranking) for one more index search (default none)")
    parser.add_argument("--check", action="store_true",
                        help="start, answer the page, /healthz and one photo search (a gallery item's own photo) over "
                             "HTTP, print the result, stop: a smoke test of a deployment")
    parser.add_argument("--save-interval", type=float, default=0.0, metavar="SECONDS",
                        help="0 (default): save every write before answering; above 0: save pending writes "
                             "this often and at shutdown (large galleries)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from visnet.cli import report_error

    try:
        settings = ApiSettings(model=args.model, index=args.index, tf_serving=args.tf_serving, backend=args.backend,
                               api_key=args.api_key, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                               max_pixels=args.max_pixels, default_k=args.default_k,
                               save_interval=args.save_interval, batch_size=args.batch_size,
                               batch_timeout_ms=args.batch_timeout_ms, large_image_pixels=args.large_image_pixels,
                               large_image_cpu=args.large_image_cpu, expansion=args.expansion)
        app = create_app(settings)
    except (ValueError, TypeError, OSError, KeyError, RuntimeError) as error:
        return report_error(error)
    import uvicorn

    service = app.service
    print(f"visnet search: {len(service.gallery)} items, model {service.model_info['name']} "
          f"version {service.model_info['version']}; open http://{args.host}:{args.port}/", flush=True)
    if args.check:
        return check(app, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def check(app, host: str, port: int) -> int:
    """Serves `app` in a thread, asks for the page, /healthz and one photo search over HTTP, stops."""
    import urllib.request

    import uvicorn

    service = app.service
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        if not server.started:
            print(f"error: the service did not start on {host}:{port}", file=sys.stderr)
            return 1
        with urllib.request.urlopen(base + "/", timeout=30) as response:
            page = response.read()
        with urllib.request.urlopen(base + "/healthz", timeout=30) as response:
            health = json.loads(response.read())
        photo = next((record["image"] for record in map(service.gallery.get, service.gallery.ids()[:50])
                      if record.get("image") and os.path.isfile(record["image"])), None)
        if photo is None:
            print(f"page {len(page)} bytes, healthz {health}; no gallery photo to search with")
            return 0
        with open(photo, "rb") as handle:
            body = json.dumps({"image_b64": base64.b64encode(handle.read()).decode(), "k": 5}).encode()
        request = urllib.request.Request(base + "/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            found = json.loads(response.read())
        print(f"check passed: page {len(page)} bytes, {health['items']} items, search by {photo} -> "
              + ", ".join(f"{r['id']} ({r['score']:.3f})" for r in found["results"]) + f" in {found['took_ms']} ms")
        return 0
    except (OSError, ValueError, KeyError) as error:
        print(f"error: the check failed: {error}", file=sys.stderr)
        return 1
    finally:
        server.should_exit = True
        thread.join(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
