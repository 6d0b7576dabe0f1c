"""``unifygeo eval``."""

from __future__ import annotations

from ..cli import CommandError, add_json_flag, comma_list, emit, weights_or_shipped
from ..options import add_cli_options


def register(sub, bench_sub) -> None:
    p = sub.add_parser("eval", help="retrieval, metric localization and full-pipeline metrics of a checkpoint")
    p.add_argument("--data", required=True, help="VIGOR root (real or synthetic)")
    p.add_argument("--weights", help="a unifygeo_ros checkpoint, or a shipped model: small (the default) or small-fov")
    p.add_argument("--protocol", default="same_area", choices=["same_area", "cross_area"],
                   help="VIGOR protocol: same_area (*_balanced_test lists) or cross_area (the test cities)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="protocol split (default test)")
    p.add_argument("--cities", help="comma-separated cities (default: the protocol's)")
    p.add_argument("--heading", default="both", choices=["known", "unknown", "both"],
                   help="known: panoramas as stored; unknown: each turned by a seeded random angle; both (default)")
    add_cli_options(p, ["top_k", "rerank_score", "alignment_candidates"])
    p.add_argument("--turns", type=int, default=4, choices=[1, 4],
                   help="rotation ensemble of the retrieval descriptors: 4 quarter turns (default, as "
                        "`unifygeo build-db`) or 1 (the paper's single descriptor)")
    add_cli_options(p, ["decoder_turns"])
    p.add_argument("--batch-size", type=int, default=32, help="tiles and panoramas encoded per batch (default 32)")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate only the first N queries of the split (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the unknown-heading rotations")
    p.add_argument("--paper", action="store_true",
                   help="the paper's pipeline exactly: one descriptor (--turns 1), top 5, Eq. 4 re-ranking "
                        "by max M^0 (--rerank-score m0), no decoder ensemble (--decoder-turns 1), the known "
                        "heading; replaces those options")
    p.add_argument("--png", help="write a PNG of a few queries here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_json_flag(p)
    p.set_defaults(handler=eval_command)


def _fmt(r: dict) -> str:
    lines = [f"{r['config']} model {r['model_hash'][:12]} on {', '.join(r['cities'])} ({r['protocol']}, {r['split']})"
             + (", the paper's pipeline" if r["eval_config"].get("paper") else "")]
    for mode in ("known", "unknown"):
        m = r.get(f"{mode}_heading")
        if not m:
            continue
        ret, loc, yaw, pipe = m["retrieval"], m["localization_on_positive"], m["yaw"], m["pipeline"]
        lines += [
            f"[{mode} heading] {ret['queries']} queries, {ret['references']} references",
            f"  retrieval  R@1 {100 * ret['R@1']:.2f}  R@5 {100 * ret['R@5']:.2f}  R@10 {100 * ret['R@10']:.2f}  "
            f"R@1% {100 * ret['R@1%']:.2f}  hit rate {100 * ret['hit_rate']:.2f}  "
            f"(R@1 after re-ranking {100 * m['retrieval_after_rerank_R@1']:.2f}, after the consensus "
            f"{100 * m.get('retrieval_after_consensus_R@1', float('nan')):.2f})",
            f"  localization on the positive tile: mean {loc['mean_m']:.2f} m, median {loc['median_m']:.2f} m; "
            f"yaw mean {yaw['mean_deg']:.2f} deg, median {yaw['median_deg']:.2f} deg",
        ]
        other = "m0" if pipe.get("rerank_score", "matching") == "matching" else "matching"
        for key, name in (("with_rerank", f"with re-ranking ({pipe.get('rerank_score', 'matching')})"),
                          (f"with_rerank_{other}", f"with re-ranking ({other})"),
                          ("without_rerank", "without re-ranking"),
                          ("with_consensus", "with the consensus of the candidates")):
            if key not in pipe:
                continue
            p = pipe[key]
            lines.append(f"  ungated pipeline {name}: R@1m {100 * p['R@1m']:.2f}  R@5m {100 * p['R@5m']:.2f}  "
                         f"R@10m {100 * p['R@10m']:.2f}  (median {p['median_m']:.2f} m)")
        if "paper" in m:
            lines += _fmt_paper(m["paper"])
    if "png" in r:
        lines.append(f"picture: {r['png']}")
    return "\n".join(lines)


def _pct(d: dict, keys) -> str:
    return "  ".join(f"{k} {100 * d[k]:.2f}" for k in keys)


def _fmt_paper(pp: dict) -> list[str]:
    """The paper's protocol (Table I), as the authors' evaluator computes it."""
    ret = ("R@1", "R@5", "R@10", "R@1%", "hit_rate")
    dist = ("R@1m", "R@3m", "R@5m", "R@10m", "R@20m")
    loc = pp["localization_on_primary"]
    return [
        f"  paper protocol (top {pp['top_k']}, re-ranking by {pp['rerank_score']}):",
        f"    retrieval before re-ranking: {_pct(pp['retrieval_before_rerank'], ret)}",
        f"    retrieval after re-ranking:  {_pct(pp['retrieval_after_rerank'], ret)}",
        f"    localization on the positive: mean {loc['mean_m']:.2f} m, median {loc['median_m']:.2f} m; "
        f"{_pct(loc, dist)}",
        f"    LF-CVGL before re-ranking: {_pct(pp['lf_cvgl_before_rerank'], dist)}",
        f"    LF-CVGL after re-ranking:  {_pct(pp['lf_cvgl_after_rerank'], dist)}",
    ]


def eval_command(args) -> int:
    from ..data.vigor import VigorFormatError
    from .evaluate import EvalConfig, evaluate

    cfg = EvalConfig(data=args.data, weights=weights_or_shipped(args.weights), protocol=args.protocol, split=args.split,
                     cities=tuple(comma_list(args.cities, "--cities")) or None, heading=args.heading,
                     top_k=args.top_k, rerank_score=args.rerank_score,
                     alignment_candidates=args.alignment_candidates, turns=args.turns, decoder_turns=args.decoder_turns, batch_size=args.batch_size, max_queries=args.max_queries, seed=args.seed,
                     png=args.png, device=args.device, paper=args.paper)
    try:
        report = evaluate(cfg)
    except (ValueError, FileNotFoundError, VigorFormatError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json, _fmt)
    return 0
