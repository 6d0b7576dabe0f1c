"""Progress bars for long work: tqdm on a terminal, a plain line every few seconds elsewhere.

On a terminal the bar redraws in place as usual. When stderr is not a terminal (a log
file, CI, a pipe) redrawing would write one carriage-return frame per update; there the
bar is written as whole lines, at most one every :data:`LOG_INTERVAL_S` seconds, plus the
last. Every command of the package draws its progress with :func:`tqdm` from here.
"""

from __future__ import annotations

import sys
from typing import Any

LOG_INTERVAL_S = 10.0


class _LineWriter:
    """A file for tqdm that turns its in-place redraws into lines."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self._stream.write(text + "\n")

    def flush(self) -> None:
        self._stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm(iterable=None, **kwargs: Any):
    """``tqdm.tqdm`` with the same arguments; quiet redraws when stderr is not a terminal."""
    from tqdm import tqdm as _tqdm

    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        kwargs["file"] = _LineWriter(stream)
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, kwargs["mininterval"]))
        kwargs.setdefault("ncols", 100)
        kwargs.setdefault("ascii", True)
    return _tqdm(iterable, **kwargs)
