"""Fixtures shared by several test files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """The node test's small synthetic city (``test_node.build_world``), its orthophoto and its
    database, built once for every test that uses it."""
    from test_node import build_world

    return build_world(tmp_path_factory.mktemp("small_world"))


@pytest.fixture
def run_cli(capsys):
    """``unifygeo ARGS`` in this process: ``run_cli(args)`` gives (exit status, captured output)."""
    from unifygeo_ros.cli import main as cli_main

    def run(args):
        code = cli_main(args)
        return code, capsys.readouterr()

    return run
