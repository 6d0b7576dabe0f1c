"""The option declaration (unifygeo_ros/options.py) is the one home of every localizer and
node option: the CLIs, NodeConfig, the Localizer's and the evaluation's defaults, the
node's parameter file, the launch file and docs/parameters.md all come from it."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest

from unifygeo_ros import options
from unifygeo_ros.cli import UsageError, build_parser, main
from unifygeo_ros.options import OPTIONS, add_cli_options, default, markdown_table, option
from unifygeo_ros.ros_core.config import NodeConfig, params_from_yaml

REPO = Path(__file__).resolve().parents[1]
CLI_COMMANDS = {
    "localize": (["localize", "image.png", "--db", "d"],
                 ["backend", "engines", "top_k", "rerank_score", "tile_choice", "alignment_candidates",
                  "decoder_turns"]),
    "eval": (["eval", "--data", "d"], ["top_k", "rerank_score", "alignment_candidates", "decoder_turns"]),
    "bench localize": (["bench", "localize"], ["decoder_turns"]),
}


def test_every_option_is_declared_completely():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names)) and len({o.attr for o in OPTIONS}) == len(OPTIONS)
    for o in OPTIONS:
        assert o.help and o.help[0].islower() or o.help[0].isupper(), o.name
        if o.choices:
            assert o.default in o.choices, o.name
        if o.item is not None:          # a list of any length: each item in the range
            assert isinstance(o.default, list) and o.item in (str, float), o.name
            assert all(o.low <= v <= o.high for v in o.default) if o.low is not None else True, o.name
        elif o.low is not None or o.high is not None:
            assert o.low <= o.default <= o.high, o.name
    assert option("top_k") is option("top_k") and option("camera_model") is option("camera.model")
    with pytest.raises(KeyError, match="no option 'topk'"):
        option("topk")


def test_nodeconfig_takes_every_default_from_the_declaration():
    fields = {f.name: f.default for f in dataclasses.fields(NodeConfig)}
    assert set(fields) == {o.attr for o in OPTIONS}
    for o in OPTIONS:
        assert fields[o.attr] == default(o.name), o.name
    # ... by reference, not by a repeated literal: every field's default is default("<name>").
    tree = ast.parse((REPO / "unifygeo_ros" / "ros_core" / "config.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NodeConfig")
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign):
            assert isinstance(stmt.value, ast.Call) and stmt.value.func.id == "default", stmt.target.id


@pytest.mark.parametrize("command", sorted(CLI_COMMANDS))
def test_cli_options_have_the_declared_default_choices_and_range(command):
    parser = build_parser()
    argv, names = CLI_COMMANDS[command]
    parsed = parser.parse_args(argv)
    for name in names:
        o = option(name)
        assert getattr(parsed, o.attr) == o.default, (command, name)
        for value in o.choices:
            assert getattr(parser.parse_args(argv + [o.flag, str(value)]), o.attr) == value
        bad = [v for v in ("2", "best", "-1", "1000") if o.choices and v not in map(str, o.choices)
               or o.low is not None and v.lstrip("-").isdigit() and not o.low <= int(v) <= o.high]
        for value in bad:
            with pytest.raises(UsageError, match=o.flag):
                parser.parse_args(argv + [o.flag, value])


def test_replay_leaves_unset_options_to_the_parameter_file(tmp_path):
    parser = build_parser()
    parsed = parser.parse_args(["replay", "--bag", "b", "--db", "d"])
    cli_options = [o for o in OPTIONS if o.cli]
    assert cli_options and all(getattr(parsed, o.attr) is None for o in cli_options)
    from unifygeo_ros.replay.cli import _config

    db = tmp_path / "db"
    db.mkdir()
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    top_k: 7\n    tile_choice: rerank\n")
    cfg = _config(parser.parse_args(["replay", "--bag", "b", "--db", str(db), "--params", str(params),
                                     "--top-k", "9"]))
    assert (cfg.top_k, cfg.tile_choice, cfg.decoder_turns) == (9, "rerank", default("decoder_turns"))


def test_localizer_and_evaluation_defaults_are_the_declared_ones():
    from unifygeo_ros.evaluation.evaluate import EvalConfig
    from unifygeo_ros.localizer.localizer import Localizer

    for fn in (Localizer.open, Localizer.__init__):
        params = inspect.signature(fn).parameters
        for name in ("rerank_score", "alignment_candidates", "decoder_turns", "tile_choice"):
            assert params[name].default == default(name), (fn.__name__, name)
    assert inspect.signature(Localizer.open).parameters["top_k"].default == default("top_k")
    ev = EvalConfig("d", "w")
    for name in ("top_k", "rerank_score", "alignment_candidates", "decoder_turns"):
        assert getattr(ev, name) == default(name)


def test_no_default_literal_is_repeated_in_the_code():
    """The literal defaults of the localizer's options appear in options.py only: e.g. no
    `default=4` for --decoder-turns, no `tile_choice: str = "consensus"` elsewhere."""
    pattern = re.compile(r"""(decoder_turns|alignment_candidates|tile_choice|rerank_score|top_k)\b[^=\n]*=\s*"""
                         r"""("consensus"|"rerank"|"matching"|"m0"|\d+)\b""")
    offenders = []
    for path in (REPO / "unifygeo_ros").rglob("*.py"):
        if path.name == "options.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "def " in line or re.search(r"""\b(decoder_turns|tile_choice|top_k|"""
                                                                 r"""alignment_candidates|rerank_score)\s*:\s*\w+\s*=\s*("""
                                                                 r""""\w+"|\d+)""", line):
                offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_parameter_file_holds_every_option_with_its_default():
    flat = params_from_yaml(REPO / "config" / "localize.yaml")
    assert set(flat) == {o.name for o in OPTIONS}
    for o in OPTIONS:
        assert flat[o.name] == o.default and type(flat[o.name]) is type(o.default), o.name


def test_docs_parameter_table_is_generated_from_the_declaration():
    doc = REPO / "docs" / "parameters.md"
    assert doc.read_text() == markdown_table(), "regenerate: python -m unifygeo_ros.options --markdown > docs/parameters.md"
    for o in OPTIONS:
        assert f"| `{o.name}` |" in doc.read_text()


def test_launch_file_takes_its_arguments_from_the_declaration():
    from unifygeo_ros.ros_core.launch_args import PARAMETER_OF, argument_description

    text = (REPO / "launch" / "localize.launch.py").read_text()
    assert "from unifygeo_ros.ros_core.launch_args import" in text
    for literal in ('"/camera/panorama/image_raw"', 'default_value="auto"'):
        assert literal not in text
    for argument, parameter in PARAMETER_OF.items():
        assert option(parameter).help in argument_description(argument)


def test_add_cli_options_range_errors_name_the_range(capsys):
    parser = argparse.ArgumentParser(prog="x")
    add_cli_options(parser, ["top_k", "alignment_candidates"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--top-k", "0"])
    assert "--top-k: expected a value in [1, 100], got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--alignment-candidates", "many"])
    assert "expected an integer, got 'many'" in capsys.readouterr().err
    assert options.option("priors.odom_heading_mode").flag == "--odom-heading-mode"


def test_a_refused_option_is_one_json_object_with_json(capsys):
    assert main(["localize", "x.png", "--db", "d", "--top-k", "0", "--json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out) == {"error": "argument --top-k: expected a value in [1, 100], got 0"}
    assert main(["localize", "x.png", "--db", "d", "--tile-choice", "best"]) == 2
    err = capsys.readouterr().err
    assert "usage: unifygeo localize" in err and "argument --tile-choice: invalid choice: 'best'" in err
