#!/usr/bin/env python3
"""The import structure of the ``unifygeo_ros`` package, and a check of its layering.

    python scripts/import_graph.py                 # Mermaid graph of the packages (Markdown)
    python scripts/import_graph.py --check         # exit 1 on an import circle or an upward import
    python scripts/import_graph.py --rev REV       # the same for a git revision (e.g. an older one)

Every ``import`` statement counts, at module level or inside a function (lazy imports
are still dependencies). A *unit* is a sub-package (``model``, ``database``, ...) or a
top-level module (``types``, ``options``, ...). :data:`LAYERS` lists the units from the
bottom up; a unit may import only units of lower layers (and itself). The check reports
every import that breaks that rule, and every circle between modules.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "unifygeo_ros"

# Bottom first. A unit may import units of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("types", "conventions", "log", "progress", "model_config", "onnx_names", "__init__"),
    ("geo", "options", "cli"),
    ("inference", "tracking"),
    ("model",),
    ("backends",),
    ("database", "data"),
    ("localizer", "sim"),
    ("evaluation", "ros_core"),
    ("training", "replay", "ros"),
    ("tools",),
    ("__main__",),
)


def _sources(rev: str | None) -> dict[str, str]:
    """{path relative to the repository: text} of the package's Python files."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    names = subprocess.check_output(["git", "ls-tree", "-r", "--name-only", rev, PACKAGE], cwd=ROOT, text=True)
    return {n: subprocess.check_output(["git", "show", f"{rev}:{n}"], cwd=ROOT, text=True)
            for n in names.split() if n.endswith(".py")}


def _module(path: str) -> tuple[str, bool]:
    parts = list(Path(path).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def module_imports(sources: dict[str, str]) -> dict[str, set[str]]:
    """{module: the package's modules it imports}."""
    modules = {_module(p)[0] for p in sources}
    out: dict[str, set[str]] = {}
    for path, text in sources.items():
        mod, is_pkg = _module(path)
        pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(text, filename=path)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" for a in node.names] + [stem]
            for t in targets:
                while t and t not in modules:          # "pkg.module.name" -> "pkg.module"
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith(PACKAGE):
                    deps.add(t)
        # "from pkg import name" also names pkg/__init__; keep only the most specific module
        out[mod] = {d for d in deps if not any(o != d and o.startswith(d + ".") for o in deps)} | (
            {d for d in deps if d == PACKAGE})
    return out


def unit(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def layer_of(u: str) -> int:
    for i, names in enumerate(LAYERS):
        if u in names:
            return i
    return -1


def unit_graph(mods: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    """{unit: {unit it imports: [the module pairs behind the arrow]}}."""
    g: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for m, deps in mods.items():
        for d in deps:
            if unit(m) != unit(d):
                g[unit(m)][unit(d)].append(f"{m} -> {d}")
        g[unit(m)]
    return g


def module_cycles(mods: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(mods.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return out


def problems(mods: dict[str, set[str]]) -> list[str]:
    found = [f"import circle: {' <-> '.join(c)}" for c in module_cycles(mods)]
    g = unit_graph(mods)
    for u, deps in sorted(g.items()):
        if layer_of(u) < 0:
            found.append(f"{u}: not in LAYERS of scripts/import_graph.py")
            continue
        for d, why in sorted(deps.items()):
            if layer_of(d) >= layer_of(u):
                found.append(f"upward import {u} -> {d}: {'; '.join(sorted(why))}")
    return found


def mermaid(mods: dict[str, set[str]]) -> str:
    g = unit_graph(mods)
    lines = ["```mermaid", "graph BT"]
    for u in sorted(g):
        for d in sorted(g[u]):
            bad = layer_of(d) >= layer_of(u) or layer_of(u) < 0
            lines.append(f"  {u.strip('_')} {'-.->|up|' if bad else '-->'} {d.strip('_')}")
    lines.append("```")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", help="a git revision instead of the working tree")
    ap.add_argument("--check", action="store_true", help="list circles and upward imports; exit 1 if any")
    args = ap.parse_args(argv)
    mods = module_imports(_sources(args.rev))
    found = problems(mods)
    if args.check:
        for line in found:
            print(line)
        print(f"{len(mods)} modules, {sum(map(len, mods.values()))} imports: "
              f"{len(found)} problem(s)" if found else f"{len(mods)} modules: no circles, no upward imports")
        return 1 if found else 0
    print(mermaid(mods))
    print(f"\n{len(mods)} modules; {len(found)} circle(s) or upward import(s)" + (":" if found else "."))
    for line in found:
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
