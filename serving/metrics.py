"""Request counters and latency histograms in Prometheus' text exposition format (version 0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

#: Latency bucket bounds in seconds (Prometheus' usual web-service spread).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: dict) -> str:
    def escape(value) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in pairs.items()) + "}" if pairs else ""


class Metrics:
    """Thread-safe request metrics of the search API.

    `observe(method, route, status, seconds)` counts one request; `render(gauges)` gives the
    exposition text, with `gauges` (name -> (help, value, labels)) appended.
    """

    def __init__(self, prefix: str = "visnet"):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._requests: dict[tuple, int] = defaultdict(int)
        self._buckets: dict[tuple, list[int]] = {}
        self._sums: dict[tuple, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            key = (method, route)
            counts = self._buckets.setdefault(key, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[key] += seconds

    def render(self, gauges: dict | None = None) -> str:
        p = self.prefix
        lines = [f"# HELP {p}_requests_total HTTP requests by method, route and status.",
                 f"# TYPE {p}_requests_total counter"]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                lines.append(f"{p}_requests_total{_labels({'method': method, 'route': route, 'status': status})} "
                             f"{count}")
            lines += [f"# HELP {p}_request_duration_seconds Request latency by method and route.",
                      f"# TYPE {p}_request_duration_seconds histogram"]
            for (method, route), counts in sorted(self._buckets.items()):
                base = {"method": method, "route": route}
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f"{p}_request_duration_seconds_bucket{_labels({**base, 'le': le})} {cumulative}")
                lines.append(f"{p}_request_duration_seconds_sum{_labels(base)} {self._sums[(method, route)]:.6f}")
                lines.append(f"{p}_request_duration_seconds_count{_labels(base)} {cumulative}")
        for name, (help_text, value, labels) in (gauges or {}).items():
            lines += [f"# HELP {p}_{name} {help_text}", f"# TYPE {p}_{name} gauge",
                      f"{p}_{name}{_labels(labels or {})} {value}"]
        return "\n".join(lines) + "\n"
