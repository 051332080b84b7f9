"""The search service's settings (`python -m serving.api` flags map one to one onto these fields)."""

from __future__ import annotations

import dataclasses
import os

from serving.requests import MAX_K


@dataclasses.dataclass
class ApiSettings:
    """Settings of the search service.

    Args:
        model: str. The export's base path (`models/NAME`): its metadata, vocabulary and, without
            `tf_serving`, the model itself.
        index: str. The gallery directory (`python -m visnet.index build`); created when absent,
            refused when it names something that is not a directory.
        tf_serving: str or None. host:port of TF Serving's gRPC API.
        backend: str. Index backend of a new, empty gallery.
        api_key: str or None. The key write requests must send (default: $VISNET_API_KEY).
        max_upload_bytes: int. Largest request body.
        max_pixels: int. Largest image (width x height).
        default_k: int. Results when the request gives no k.
        batch_size: int. Concurrent photo searches embedded together, up to this many images per model
            call (`serving.batching`); 1 turns batching off.
        batch_timeout_ms: float. Longest wait for more searches to batch with a waiting one.
        save_interval: float. 0: every write is saved before it is acknowledged. Above 0: writes
            are saved together at most this many seconds apart, and at shutdown (for large
            galleries, where a save rewrites every vector; a crash loses the unsaved writes).
        large_image_pixels: int. Images whose decode produces more pixels than this (JPEGs count
            after DCT scaling) take the large-image lane (`serving.budget`).
        large_image_cpu: float. Share of one core the large-image lane may spend on average; past
            it, large images are answered 503 with Retry-After.
        expansion: str. Query expansion of photo searches, `qe=K[,alpha=A]` (`visnet.index.expansion`):
            each query plus its K nearest products searched again; `none` (default) searches once.
    """

    model: str
    index: str
    tf_serving: str | None = None
    backend: str = "brute"
    api_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    default_k: int = 12
    save_interval: float = 0.0
    batch_size: int = 16
    batch_timeout_ms: float = 2.0
    large_image_pixels: int = 2_000_000
    large_image_cpu: float = 0.25
    expansion: str = "none"

    def __post_init__(self):
        if self.api_key is None:
            self.api_key = os.environ.get("VISNET_API_KEY") or None
        for name in ("max_upload_bytes", "max_pixels", "batch_size", "large_image_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {getattr(self, name)}")
        if not 1 <= self.default_k <= MAX_K:
            raise ValueError(f"default_k must be between 1 and {MAX_K}. Received: {self.default_k}")
        if self.batch_timeout_ms < 0:
            raise ValueError(f"batch_timeout_ms must be >= 0. Received: {self.batch_timeout_ms}")
        if self.save_interval < 0:
            raise ValueError(f"save_interval must be >= 0 seconds. Received: {self.save_interval}")
        if not 0 < self.large_image_cpu <= 1:
            raise ValueError(f"large_image_cpu must be in (0, 1]. Received: {self.large_image_cpu}")
        from visnet.index.expansion import Expansion

        self.query_expansion = Expansion.parse(self.expansion)
        if self.query_expansion.dba > 1:
            raise ValueError(f"expansion: the service expands queries only (qe=K,alpha=A); database-side "
                             f"augmentation (dba) is for a fixed gallery. Received: {self.expansion!r}")
        if os.path.exists(self.index) and not os.path.isdir(self.index):
            raise ValueError(f"--index {self.index} is a file; it must name a gallery directory (or a path "
                             "to create one at).")
