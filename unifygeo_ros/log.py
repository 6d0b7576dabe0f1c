"""Logging set-up shared by every ``unifygeo`` command: the package's INFO logs on stderr,
so that stdout stays one JSON object with ``--json``."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


def setup_logging() -> None:
    """INFO logs of the package on stderr (stdout stays one JSON object with --json)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    logging.getLogger("unifygeo_ros").setLevel(logging.INFO)
    logging.getLogger("faiss").setLevel(logging.WARNING)
