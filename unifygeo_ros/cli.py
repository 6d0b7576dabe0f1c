"""The ``unifygeo`` console command.

Each subsystem owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers, bench_subparsers)``; this file only wires them together.
Handlers import heavy modules (torch, rasterio, ...) lazily so that ``--help`` is fast.

Every reporting command takes ``--json`` and then prints exactly one JSON object on
stdout (progress bars and logs go to stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

# Subsystems that contribute subcommands.
COMMAND_MODULES = (
    "unifygeo_ros.tools.demo",
    "unifygeo_ros.localizer.cli",
    "unifygeo_ros.database.cli",
    "unifygeo_ros.replay.cli",
    "unifygeo_ros.evaluation.cli",
    "unifygeo_ros.training.cli",
    "unifygeo_ros.sim.cli",
    "unifygeo_ros.sim.export_cli",
    "unifygeo_ros.data.cli",
    "unifygeo_ros.backends.cli",
    "unifygeo_ros.tools.cli",
    "unifygeo_ros.model.cli",
    "unifygeo_ros.ros.cli",
)

# The order of ``unifygeo --help``: what a user reaches for first comes first.
COMMAND_ORDER = ("demo", "localize", "build-db", "verify-db", "replay", "eval", "train", "sim", "export", "bench",
                 "model-info", "calibrate", "vigor-check")


class CommandError(Exception):
    """A user-facing failure: printed as one line (or one JSON object), exit status 2."""


def weights_or_shipped(weights: str | None) -> str:
    """``--weights`` as given: a checkpoint's path, or the name of a model shipped in the
    package (``small``, ``small-fov``: ``model_config.SHIPPED_MODELS``; a file of that name
    wins); without it the shipped ``small`` model (a CommandError if absent)."""
    from .model_config import SHIPPED_MODELS, shipped_model_path

    if weights and (weights not in SHIPPED_MODELS or Path(weights).exists()):
        return weights
    try:
        return str(shipped_model_path(weights or "small"))
    except FileNotFoundError as exc:
        raise CommandError(f"{exc}; pass --weights CKPT") from exc


def comma_list(text: str | None, option: str, convert: Callable[[str], Any] = str, what: str = "values",
               allowed=None) -> list:
    """The non-empty items of a comma-separated option value, each passed through ``convert``
    (``[]`` for ``None``); a :class:`CommandError` naming ``option`` when an item does not
    convert, or is not among ``allowed``."""
    if text is None:
        return []
    items = [v.strip() for v in str(text).split(",") if v.strip()]
    try:
        values = [convert(v) for v in items]
    except ValueError:
        raise CommandError(f"{option}: expected comma-separated {what}, got {text!r}") from None
    if allowed is not None:
        bad = sorted(set(values) - set(allowed))
        if bad:
            raise CommandError(f"{option}: expected some of {', '.join(map(str, allowed))}, got {', '.join(map(str, bad))}")
    return values


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Print a command's result: one JSON object with ``--json``, else readable text."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default) + "\n")
    else:
        sys.stdout.write((human(result) if human else _plain(result)) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def _plain(result: dict[str, Any], indent: int = 0) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(_plain(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {value}")
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    """argparse with negative numbers and comma-separated lists of them taken as values:
    ``--origin -33.45,-70.67`` and ``--prior -120,40,50`` work as written (plain argparse
    reads a token that starts with ``-`` and is not a single number as an option)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBERS

    def error(self, message: str):
        """A usage error; with ``--json`` on the command line, one JSON object on stdout."""
        raise UsageError(self, message)


class UsageError(Exception):
    """A command line argparse refused (unknown option, value out of range...): exit status 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
NEGATIVE_NUMBERS = re.compile(rf"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:,{_NUMBER})*$")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="unifygeo",
        description="UnifyGeo cross-view geo-localization: localize a camera against geo-referenced aerial "
                    "imagery, build aerial databases, replay rosbags, train and evaluate the network, render "
                    "synthetic cities, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench = sub.add_parser("bench", help="measure speed and memory: model, retrieval, localize, train, sim")
    bench_sub = bench.add_subparsers(dest="bench_target", metavar="TARGET")
    bench_sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, bench_sub)
    _order_commands(sub)
    return parser


def _order_commands(sub) -> None:
    """List the subcommands in :data:`COMMAND_ORDER` (others after them, as registered)."""
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    sub._choices_actions.sort(key=lambda a: rank.get(a.dest, len(rank)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        if "--json" in argv:
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        else:
            exc.parser.print_usage(sys.stderr)
            sys.stderr.write(f"{exc.parser.prog}: error: {exc}\n")
        return 2
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        else:
            sys.stderr.write(f"unifygeo {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's main, so that subsystems see one CommandError class.
    from unifygeo_ros.cli import main as _main

    sys.exit(_main())
