"""Covariance scale factors per model hash, written by ``unifygeo calibrate --write``.

Each entry says how and on what it was measured (held-out synthetic cities, never the
training seeds 11-16, the validation seed 21 nor the demo's 2026). See :mod:`.calibration`.
"""

CALIBRATIONS: dict[str, dict] = {}
