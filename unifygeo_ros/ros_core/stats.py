"""Rolling rate and latency figures for the node's diagnostics (ROS-free)."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np


class RollingStats:
    """Counts and latencies over the last ``window_s`` seconds (monotonic clock).

    ``last_error`` is the newest failure's message until a frame is published again (then
    it is empty, and ``last_error_cleared`` keeps how many successes have followed it)."""

    def __init__(self, window_s: float = 10.0, clock=time.monotonic):
        self.window_s = float(window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._received: collections.deque = collections.deque()
        self._dropped: collections.deque = collections.deque()
        self._published: collections.deque = collections.deque()   # (t, latency_ms)
        self._failed: collections.deque = collections.deque()      # (t, kind)
        self.totals = {"received": 0, "published": 0, "failed": 0, "dropped": 0}
        self.failures_by_kind: dict[str, int] = {}
        self.last_error = ""
        self.last_error_time = None
        self.last_published_time = None
        self.active_since = clock()
        self.last_stage_ms: dict[str, float] = {}

    def reset_activity(self) -> None:
        """Start the staleness clock again (the node was activated)."""
        with self._lock:
            self.active_since = self._clock()

    def _trim(self, now: float) -> None:
        for q in (self._received, self._dropped, self._published, self._failed):
            while q and now - (q[0][0] if isinstance(q[0], tuple) else q[0]) > self.window_s:
                q.popleft()

    def received(self, dropped_previous: bool = False) -> None:
        now = self._clock()
        with self._lock:
            self._received.append(now)
            self.totals["received"] += 1
            if dropped_previous:
                self._dropped.append(now)
                self.totals["dropped"] += 1

    def published(self, latency_ms: float, stage_ms: dict[str, float] | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._published.append((now, float(latency_ms)))
            self.totals["published"] += 1
            self.last_published_time = now
            self.last_error = ""
            if stage_ms:
                self.last_stage_ms = dict(stage_ms)

    def failed(self, kind: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            self._failed.append((now, kind))
            self.totals["failed"] += 1
            self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1
            self.last_error = f"{kind}: {message}"
            self.last_error_time = now

    def snapshot(self) -> dict:
        now = self._clock()
        with self._lock:
            self._trim(now)
            lat = np.array([v for _, v in self._published]) if self._published else np.zeros(0)
            span = self.window_s
            received = len(self._received)
            since_pose = now - (self.last_published_time if self.last_published_time is not None
                                else self.active_since)
            return {
                "input_rate_hz": received / span,
                "output_rate_hz": len(self._published) / span,
                "failure_rate_hz": len(self._failed) / span,
                "drop_share": len(self._dropped) / received if received else 0.0,
                "latency_ms_mean": float(lat.mean()) if lat.size else float("nan"),
                "latency_ms_max": float(lat.max()) if lat.size else float("nan"),
                "totals": dict(self.totals),
                "failures_by_kind": dict(self.failures_by_kind),
                "recent_failures_by_kind": dict(collections.Counter(k for _, k in self._failed)),
                "last_error": self.last_error,
                "last_error_age_s": (now - self.last_error_time) if self.last_error_time is not None else None,
                "seconds_since_pose": since_pose,
                "last_stage_ms": dict(self.last_stage_ms),
            }
