"""The node's health for /diagnostics: OK, WARN or ERROR with the reason (ROS-free).

:func:`assess` reads a :meth:`RollingStats.snapshot <.stats.RollingStats.snapshot>`, the
node's lifecycle state and its configuration's thresholds (``diagnostics.*``):

* ERROR when the backend failed on a recent frame (an internal error), or when images
  arrive but no pose has been published for ``diagnostics.stale_after_s`` (or since
  activation);
* WARN when the node is not active (a lifecycle state other than ``active``), when no
  images arrive, when more than ``diagnostics.max_drop_share`` of the received frames were
  dropped unprocessed, or when the mean latency is above ``diagnostics.max_latency_ms``;
* OK otherwise.

The first condition that holds, in that order, gives the level and message.
"""

from __future__ import annotations

import math

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}


def assess(snapshot: dict, cfg, state: str = "active") -> tuple[int, str]:
    """(level, message) of the node's localization status."""
    s = snapshot
    if s.get("recent_failures_by_kind", {}).get("internal"):
        return ERROR, f"the backend failed on a recent frame ({s.get('last_error') or 'internal error'})"
    if state != "active":
        return WARN, f"not localizing: lifecycle state {state}"
    receiving = s["input_rate_hz"] > 0
    if receiving and s["seconds_since_pose"] > cfg.stale_after_s:
        return ERROR, (f"images arrive ({s['input_rate_hz']:.1f} Hz) but no pose was published for "
                       f"{s['seconds_since_pose']:.0f} s (diagnostics.stale_after_s {cfg.stale_after_s:g})")
    if not receiving:
        return WARN, "no images received recently"
    if s["drop_share"] > cfg.max_drop_share:
        return WARN, (f"{100 * s['drop_share']:.0f} % of the frames dropped unprocessed (diagnostics.max_drop_share "
                      f"{cfg.max_drop_share:g}): inference is slower than the camera")
    latency = s["latency_ms_mean"]
    if not math.isnan(latency) and latency > cfg.max_latency_ms:
        return WARN, f"mean latency {latency:.0f} ms above diagnostics.max_latency_ms {cfg.max_latency_ms:g}"
    if s["output_rate_hz"] > 0:
        return OK, f"localizing at {s['output_rate_hz']:.2f} Hz"
    return OK, "images arrive; no pose yet"
