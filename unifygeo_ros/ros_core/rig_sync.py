"""Pairing the frames of a camera rig by stamp: an approximate-time synchronizer.

Like message_filters' ``ApproximateTimeSynchronizer``, without ROS: one queue per camera
(sorted by stamp, at most ``queue_size`` frames; beyond, the oldest is dropped), and a set
of one frame per camera is emitted when their stamps lie within ``slop`` of each other
(newest minus oldest <= slop). The node (:mod:`unifygeo_ros.ros.node`) and ``unifygeo
replay`` feed it the same way, one message at a time, and localize each set as one frame.

The rule, applied after every frame added, while every queue holds a frame:

1. the *pivot* is the newest of the queues' oldest frames: no set can hold a frame older
   than ``pivot - slop`` (the pivot's camera has nothing older), so those are dropped;
2. when that leaves a camera whose oldest frame is newer than the pivot, that frame is
   the new pivot (back to 1.);
3. otherwise every camera's oldest frame lies within ``[pivot - slop, pivot]``: each camera
   contributes its newest frame not newer than the pivot, the set is emitted, and every
   frame up to its members is removed (the older ones counted as dropped).

A set is emitted as soon as one exists (no wait for a possibly closer one), so each set
costs no latency beyond its last frame's arrival. The set's stamp is the **mean** of its
frames' stamps (rounded down to the nanosecond). A frame not newer than the last set's
member of its camera (out of order by more than a set) is dropped as late; frames out of
order within the queue are put in stamp order. Thread-safe: the node's callbacks run on
several executor threads.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass(frozen=True)
class RigSet:
    """One frame of every rig camera, in the order of the cameras (``rig.image_topics`` or
    ``rig.compressed_image_topics``)."""

    messages: tuple                 # the cameras' Image / CompressedImage messages
    stamps_ns: tuple                # their stamps
    stamp_ns: int                   # the set's stamp: the mean of stamps_ns

    @property
    def spread_ns(self) -> int:
        """Newest minus oldest stamp of the set."""
        return max(self.stamps_ns) - min(self.stamps_ns)

    @property
    def header(self):
        """A header-like view (``stamp.sec``, ``stamp.nanosec``, ``frame_id`` ""), so that a set
        goes where an image message goes."""
        return SimpleNamespace(stamp=SimpleNamespace(sec=self.stamp_ns // 1_000_000_000,
                                                     nanosec=self.stamp_ns % 1_000_000_000), frame_id="")


@dataclass
class SyncStats:
    """Counts since the start (or :meth:`RigSynchronizer.reset`)."""

    received: list = field(default_factory=list)     # frames received, per camera
    dropped: list = field(default_factory=list)      # frames of no set (too old, late or beyond the queue), per camera
    sets: int = 0                                    # sets emitted
    max_spread_ms: float = 0.0                       # the widest emitted set's spread

    def as_dict(self) -> dict:
        return {"sets": self.sets, "received": list(self.received), "dropped": list(self.dropped),
                "max_spread_ms": round(self.max_spread_ms, 3)}


class RigSynchronizer:
    """Approximate-time pairing of ``n`` cameras' frames (see the module's docstring)."""

    def __init__(self, n: int, slop_ns: int, queue_size: int = 5):
        if n < 1:
            raise ValueError(f"rig synchronizer: expected at least one camera, got {n}")
        if slop_ns <= 0:
            raise ValueError(f"rig synchronizer: expected a slop > 0, got {slop_ns} ns")
        if queue_size < 1:
            raise ValueError(f"rig synchronizer: expected a queue size >= 1, got {queue_size}")
        self.n = int(n)
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self._lock = threading.Lock()
        self.reset()

    @classmethod
    def from_config(cls, cfg) -> "RigSynchronizer":
        """For the rig of a :class:`~unifygeo_ros.ros_core.config.NodeConfig`."""
        return cls(len(cfg.rig_topics), int(round(cfg.rig_slop_s * 1e9)), int(cfg.rig_queue_size))

    def reset(self) -> None:
        """Empty the queues and zero the counts."""
        with self._lock:
            self._queues: list[list[tuple[int, int, object]]] = [[] for _ in range(self.n)]   # (stamp, seq, msg)
            self._last: list[int | None] = [None] * self.n        # stamp of each camera's member of the last set
            self._seq = 0
            self.stats = SyncStats(received=[0] * self.n, dropped=[0] * self.n)

    def add(self, camera: int, msg, stamp_ns: int) -> list[RigSet]:
        """Add camera ``camera``'s frame ``msg`` stamped ``stamp_ns``; returns the sets it completes
        (none or one; more only after out-of-order frames)."""
        if not 0 <= camera < self.n:
            raise IndexError(f"rig synchronizer: camera {camera} of {self.n}")
        st = int(stamp_ns)
        with self._lock:
            self.stats.received[camera] += 1
            last = self._last[camera]
            if last is not None and st <= last:
                self.stats.dropped[camera] += 1           # late: older than this camera's frame in the last set
                return []
            q = self._queues[camera]
            self._seq += 1
            bisect.insort(q, (st, self._seq, msg))
            while len(q) > self.queue_size:
                q.pop(0)
                self.stats.dropped[camera] += 1
            return self._emit()

    def pending(self) -> list[int]:
        """Frames waiting, per camera."""
        with self._lock:
            return [len(q) for q in self._queues]

    def _emit(self) -> list[RigSet]:
        out = []
        queues = self._queues
        while all(queues):
            pivot = max(q[0][0] for q in queues)
            for i, q in enumerate(queues):                  # 1. too old for any set
                while q and q[0][0] < pivot - self.slop_ns:
                    q.pop(0)
                    self.stats.dropped[i] += 1
            if not all(queues):
                break
            if max(q[0][0] for q in queues) > pivot:             # 2. a newer pivot
                continue
            members = []                                        # 3. each camera's newest frame <= pivot
            for i, q in enumerate(queues):
                k = bisect.bisect_right(q, (pivot, float("inf"))) - 1
                members.append(q[k])
                self.stats.dropped[i] += k
                del q[:k + 1]
                self._last[i] = members[-1][0]
            stamps = tuple(m[0] for m in members)
            rs = RigSet(tuple(m[2] for m in members), stamps, sum(stamps) // len(stamps))
            self.stats.sets += 1
            self.stats.max_spread_ms = max(self.stats.max_spread_ms, rs.spread_ns / 1e6)
            out.append(rs)
        return out
