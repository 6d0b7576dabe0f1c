"""The package's layering: no import circles, no upward imports, rclpy only in ros/, and the
run-time path free of torch (scripts/import_graph.py; docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "import_graph.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO)


def test_no_import_circles_and_no_upward_imports():
    proc = _run("--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no circles, no upward imports" in proc.stdout


def test_the_check_finds_a_circle_and_an_upward_import():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import import_graph as ig
    finally:
        sys.path.remove(str(SCRIPT.parent))
    mods = {"unifygeo_ros.inference.a": {"unifygeo_ros.inference.b"},
            "unifygeo_ros.inference.b": {"unifygeo_ros.inference.a", "unifygeo_ros.localizer.x"},
            "unifygeo_ros.localizer.x": set()}
    found = ig.problems(mods)
    assert any(p.startswith("import circle: unifygeo_ros.inference.a <-> unifygeo_ros.inference.b") for p in found)
    assert any(p.startswith("upward import inference -> localizer") for p in found)
    assert ig.problems({"unifygeo_ros.localizer.x": {"unifygeo_ros.inference.a"},
                        "unifygeo_ros.inference.a": set()}) == []


def test_docs_show_the_current_import_graph():
    graph = _run().stdout.split("```")[1]
    assert graph in (REPO / "docs" / "architecture.md").read_text(), (
        "docs/architecture.md: paste the output of `python scripts/import_graph.py`")


def test_rclpy_is_imported_in_ros_only():
    offenders = []
    for path in (REPO / "unifygeo_ros").rglob("*.py"):
        if "ros" in path.relative_to(REPO / "unifygeo_ros").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("rclpy", "launch", "launch_ros", "tf2_ros") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_the_runtime_path_does_not_load_torch():
    code = ("import sys\n"
            "import unifygeo_ros.localizer.localizer, unifygeo_ros.ros_core.pipeline, unifygeo_ros.database.store\n"
            "import unifygeo_ros.inference.retrieval, unifygeo_ros.inference.rerank, unifygeo_ros.cli\n"
            "unifygeo_ros.cli.build_parser()\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
