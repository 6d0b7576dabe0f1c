"""``unifygeo eval``: retrieval, metric localization and the full pipeline on a VIGOR-layout root.

For each heading mode:

* ``known``: panoramas as stored (north-aligned); the decoder may only use the identity
  alignment.
* ``unknown``: every panorama is turned by a seeded random whole number of pixel columns
  (the truth yaw turns with it); the decoder searches all alignments and the yaw head
  refines the winner.

Then (1) retrieval over all references of the split's cities (R@1/5/10/1 %, hit rate; with
an unknown heading a tile scores its best cosine over the panorama's alignments; by
default every score is the mean over the rotation ensemble's four quarter turns, as in the
databases of ``unifygeo build-db``; ``turns = 1`` gives the paper's single descriptor; see
:mod:`unifygeo_ros.inference.retrieval`),
(2) metric localization of D's MAP pixel on the positive tile (mean / median metres) and
yaw error, (3) the full pipeline: FAISS top-k, decoder on the k candidates, re-ranking by
``s_t + m_t`` (``m_t``: the matching score of every level by default, ``max M^0_t`` as in
Eq. 4 with ``rerank_score="m0"``; both are reported), D's MAP pixel on the chosen tile
turned into latitude / longitude and compared with the panorama's: R@1m, R@5m, R@10m with
and without re-ranking; and with the consensus of the candidates
(:func:`unifygeo_ros.inference.rerank.consensus`, ours, the localizer's default tile choice) on
the re-ranking's scores.

With an unknown heading the alignment search of :mod:`unifygeo_ros.inference.alignment_search`
(the localizer's) runs on every decoded tile, unless ``alignment_candidates`` is 0. With
``decoder_turns`` 4 (the default, as in the localizer) or 8 the tile whose D is measured, the
positive tile in (2) and the chosen tile in (3), is then decoded again by the rotation (and
mirror) ensemble of :mod:`unifygeo_ros.inference.decoder_ensemble`, which gives its D, alignment
and yaw.

Every heading mode also reports the paper's protocol as the authors' public evaluator
computes it (block ``paper``; definitions in :mod:`.metrics`): retrieval before and after
re-ranking the top-k (1-based ranks, official hit rate), metric localization on the primary
positive (pixel indices, recalls under 1 / 3 / 5 / 10 / 20 m), and the gated LF-CVGL R@Xm (the
primary positive ranked first AND its localization error under X m, over every query). The
ungated full-pipeline recalls of (3) stay in ``pipeline``. :data:`PAPER_PIPELINE` (``unifygeo eval
--paper``) runs the paper's pipeline exactly: one descriptor, top-5, Eq. 4 re-ranking by
``max M^0``, no ensembles, the known heading.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..geo import enu_offset_m, latlon_from_enu_offset
from ..inference.alignment_search import one_hot_logprior, search_alignments
from ..inference.decoder_ensemble import (
    check_decoder_turns,
    decode_turn_ensemble,
    is_mirrored,
    member_tiles,
    mirror_panorama,
)
from ..inference.heading import ALIGNED_YAW_DEG, yaw_from_alignment
from ..inference.rerank import consensus, rerank, rerank_output
from ..inference.retrieval import (
    best_alignment_scores,
    check_turns,
    ensemble_queries,
    ensemble_references,
    ensemble_search,
    first_turn,
    turned_tiles,
)
from ..model.heading import known_heading_prior, unknown_heading_prior
from ..model.unifygeo import load_checkpoint
from ..onnx_names import DECODER_OUTPUTS
from ..options import default
from .metrics import (
    distance_stats,
    gated_recall,
    map_pixel,
    official_hits,
    paper_localization_metrics,
    paper_pixel_error_m,
    paper_retrieval_metrics,
    paper_truth_index,
    positive_ranks,
    recall_at_distances,
    reranked_ranks,
    retrieval_metrics,
    vigor_hits,
    yaw_stats,
)

#: The paper's pipeline (Sec. III-D, IV): one global descriptor per image, the top 5, Eq. 4
#: re-ranking by ``s_t + max M_t^0``, no rotation ensembles, the known (north-aligned) heading.
PAPER_PIPELINE = {"heading": "known", "top_k": 5, "rerank_score": "m0", "turns": 1, "decoder_turns": 1,
                  "alignment_candidates": 0}


@dataclass
class EvalConfig:
    data: str
    weights: str
    protocol: str = "same_area"
    split: str = "test"
    cities: tuple[str, ...] | None = None
    labels: str = "auto"
    heading: str = "both"               # known | unknown | both
    top_k: int = default("top_k")
    rerank_score: str = default("rerank_score")            # matching (every level) | m0 (Eq. 4)
    alignment_candidates: int = default("alignment_candidates")   # unknown heading; 0: the decoder's max-M^0 choice
    turns: int = 4                      # rotation ensemble of the retrieval descriptors (1: none)
    decoder_turns: int = default("decoder_turns")   # decoder ensemble on the measured tile: 4, 8 (with mirrors), 1 (none)
    batch_size: int = 32
    max_queries: int | None = None
    seed: int = 0
    png: str | None = None
    png_queries: int = 4
    device: str = "auto"
    paper: bool = False                 # PAPER_PIPELINE replaces the settings above

    def resolved(self) -> "EvalConfig":
        """The configuration that runs: with ``paper``, the settings of :data:`PAPER_PIPELINE`."""
        return replace(self, **PAPER_PIPELINE) if self.paper else self


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


def _stack(ds, idx, key):
    return torch.stack([ds[i][key] for i in idx])


class ReferenceBank:
    """Global descriptors of every reference tile, and their decoder features (kept in
    memory as fp16 when they fit in ``budget_bytes``, else recomputed when needed)."""

    def __init__(self, model, refs, device, batch_size: int, budget_bytes: int = 2 * 2 ** 30, progress=True,
                 turns: int = 1):
        from unifygeo_ros.progress import tqdm

        self.model, self.refs, self.device = model, refs, device
        cfg = model.cfg
        per_tile = sum(c * n * n for c, n in zip(cfg.level_channels, cfg.level_cells)) * 2
        self.keep = per_tile * len(refs) <= budget_bytes
        globals_, self.features = [], None
        feats: list[list[torch.Tensor]] = [[] for _ in range(4)]
        with torch.inference_mode():
            for idx in tqdm(list(_batches(len(refs), batch_size)), desc="encoding references", unit="batch",
                            disable=not progress, file=sys.stderr):
                tiles = _stack(refs, idx, "aerial").to(device)
                a = model.encode_aerial(tiles)
                g = a["global"][:, None]
                if turns > 1:       # the rotation ensemble (inference.retrieval): turn 0 is the tile as it is
                    turned = turned_tiles(tiles, turns)[:, 1:]
                    rest = model.encode_aerial(turned.reshape(-1, *tiles.shape[1:]))["global"]
                    g = torch.cat([g, rest.view(len(idx), turns - 1, -1)], dim=1)
                globals_.append(ensemble_references(g.float().cpu()))
                if self.keep:
                    for lv in range(4):
                        feats[lv].append(a["features"][lv].half().cpu())
        self.globals = torch.cat(globals_).numpy()
        if self.keep:
            self.features = [torch.cat(f) for f in feats]

    def features_of(self, tiles) -> list[torch.Tensor]:
        tiles = list(tiles)
        if self.features is not None:
            return [f[tiles].float().to(self.device) for f in self.features]
        with torch.inference_mode():
            return self.model.encode_aerial(_stack(self.refs, tiles, "aerial").to(self.device))["features"]


def _tile_latlon(refs, tile: int) -> tuple[float, float]:
    rec = refs.index.satellites[tile]
    return rec.lat, rec.lon


def _pixel_to_latlon(refs, tile: int, row: float, col: float) -> tuple[float, float]:
    """Tiles are true-north-up: east = (col - L/2) * mpp, north = (L/2 - row) * mpp."""
    side = refs.aerial_size
    mpp = refs.tile_mpp(tile)
    lat0, lon0 = _tile_latlon(refs, tile)
    return latlon_from_enu_offset(lat0, lon0, (col - side / 2) * mpp, (side / 2 - row) * mpp)


def _tile_centers(refs, tiles) -> np.ndarray:
    """(K, 2) east / north metres of the tiles' centres from the first one's (for the consensus)."""
    lat0, lon0 = _tile_latlon(refs, int(tiles[0]))
    return np.array([enu_offset_m(lat0, lon0, *_tile_latlon(refs, int(t))) for t in tiles], dtype=np.float64)


def _latlon_to_pixel(refs, tile: int, lat: float, lon: float) -> tuple[float, float]:
    side = refs.aerial_size
    mpp = refs.tile_mpp(tile)
    east, north = enu_offset_m(*_tile_latlon(refs, tile), lat, lon)
    return side / 2 - north / mpp, side / 2 + east / mpp


def _rows(ground: dict, rows) -> dict:
    """The ground descriptors of queries ``rows`` (one decoder row each)."""
    idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    return {"descriptors": [d[idx] for d in ground["descriptors"]], "valid": ground["valid"][idx]}


_TORCH_NAMES = {"alignment_scores": "shift_scores", "alignment": "shift"}   # exported name -> model.decode's


def _decode(model, ground: dict, features: list[torch.Tensor], prior: torch.Tensor) -> dict[str, np.ndarray]:
    """The decoder through PyTorch, with the outputs named as the exported decoder's."""
    with torch.inference_mode():
        out = model.decode(ground, {"features": features}, prior)
    tensors = {name: out[_TORCH_NAMES.get(name, name)] for name in DECODER_OUTPUTS
               if _TORCH_NAMES.get(name, name) in out}                  # no yaw_field without a yaw head
    return {name: (t.float() if t.is_floating_point() else t).cpu().numpy() for name, t in tensors.items()}


def _decode_searched(model, ground: dict, query_rows, features: list[torch.Tensor], prior: torch.Tensor,
                     n_align: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode row m = (query ``query_rows[m]``, tile ``features[*][m]``); with ``n_align`` > 0
    (unknown heading), run the alignment search on every row. Returns the outputs and the
    sub-bin alignment offsets."""
    out = _decode(model, _rows(ground, query_rows), features, prior)
    if n_align <= 0:
        return out, np.zeros(len(query_rows))
    query_rows = np.asarray(query_rows)
    k_bins = model.cfg.heading_bins

    def decode_rows(rows: np.ndarray, aligns: np.ndarray) -> dict:
        idx = torch.as_tensor(rows, dtype=torch.long)
        return _decode(model, _rows(ground, query_rows[rows]), [f[idx] for f in features],
                       torch.from_numpy(one_hot_logprior(aligns, k_bins)).to(prior.device))

    search = search_alignments(decode_rows, out["alignment_scores"], prior.cpu().numpy(), n_align, first=out)
    return {**search.per_tile(), "alignment_scores": out["alignment_scores"]}, search.offset


def _turn_ensemble(model, grounds: tuple, query_row: int, tile: torch.Tensor, logprior: np.ndarray, turns: int):
    """The decoder's rotation (and mirror) ensemble (inference.decoder_ensemble) of query
    ``query_row`` on one tile image (3, L, L); ``grounds``: the ground branch's outputs for
    the panoramas as given and (with ``turns = 8``) mirrored. Returns the ensemble's outputs
    (first axis 1) and the sub-bin offset."""
    k_bins = model.cfg.heading_bins
    with torch.inference_mode():
        feats = model.encode_aerial(member_tiles(tile[None], turns)[0])["features"]

    def decode_turn(j: int, aligns: np.ndarray) -> dict:
        n = len(aligns)
        ground = grounds[1] if is_mirrored(j) else grounds[0]
        return _decode(model, _rows(ground, np.full(n, query_row)), [f[j:j + 1].expand(n, *f.shape[1:]) for f in feats],
                       torch.from_numpy(one_hot_logprior(aligns, k_bins)).to(tile.device))

    ens = decode_turn_ensemble(decode_turn, logprior, k_bins, turns)
    return ens.out, ens.offset


def _read_yaw(model, out: dict, b: int, row: float, col: float, offset: float = 0.0) -> float:
    if "yaw_field" not in out:          # no yaw head: the chosen alignment alone
        return float(yaw_from_alignment(int(out["alignment"][b]) + float(offset), ALIGNED_YAW_DEG, model.cfg))
    field = out["yaw_field"][b, :, int(row), int(col)]
    return float(yaw_from_alignment(int(out["alignment"][b]) + float(offset),
                                    np.degrees(np.arctan2(field[1], field[0])), model.cfg))


def evaluate_mode(model, queries, refs, bank: ReferenceBank, mode: str, cfg: EvalConfig, device,
                  progress=True, keep_examples: int = 0) -> dict:
    import faiss

    from unifygeo_ros.progress import tqdm

    mcfg = model.cfg
    width = mcfg.ground_size[1]
    n = len(queries) if cfg.max_queries is None else min(cfg.max_queries, len(queries))
    rng = np.random.default_rng((cfg.seed, 7))
    rolls = rng.integers(0, width, size=n) if mode == "unknown" else np.zeros(n, dtype=int)
    positives = np.stack([r.satellites for r in queries.index.panoramas[:n]])
    first = first_turn(bank.globals, cfg.turns)         # the database's index: turn 0 (inference.retrieval)
    index = faiss.IndexFlatIP(first.shape[1])
    index.add(first)
    k = min(cfg.top_k, len(refs))
    n_align = cfg.alignment_candidates if mode == "unknown" else 0
    other = "m0" if cfg.rerank_score == "matching" else "matching"    # the re-ranking reported beside it

    # Retrieval queries: the descriptor as given (known heading), or one per alignment (unknown).
    n_queries = mcfg.heading_bins if mode == "unknown" else 1
    qglobal = np.zeros((n, n_queries, bank.globals.shape[1]), dtype=np.float32)
    loc_err, yaw_est, yaw_true = [], [], []
    pipe_err, pipe_err_norerank, pipe_err_other, pipe_err_consensus = [], [], [], []
    rerank_top1, consensus_top1 = [], []
    paper_err, cand_all, fused_all, top1_any_after = [], [], [], []
    examples = []
    times = {"ground_ms": 0.0, "decoder_positive_ms": 0.0, "search_ms": 0.0, "decoder_topk_ms": 0.0}
    for idx in tqdm(list(_batches(n, cfg.batch_size)), desc=f"queries ({mode} heading)", unit="batch",
                    disable=not progress, file=sys.stderr):
        items = [queries[i] for i in idx]
        images = torch.stack([torch.roll(it["ground"], shifts=-int(rolls[i]), dims=-1) for i, it in zip(idx, items)])
        t0 = time.perf_counter()
        with torch.inference_mode():
            ground = model.encode_ground(images.to(device), subdivisions=mode == "unknown")
            mirrored = (model.encode_ground(mirror_panorama(images).to(device), subdivisions=mode == "unknown")
                        if cfg.decoder_turns == 8 else None)
        grounds = (ground, mirrored)
        times["ground_ms"] += (time.perf_counter() - t0) * 1e3
        for j, align in enumerate(ground["global_alignments"].float().cpu().numpy()):
            q = ensemble_queries(align, cfg.turns)
            qglobal[idx.start + j] = q if mode == "unknown" else q[:1]
        b = len(idx)
        prior = (unknown_heading_prior(b, mcfg) if mode == "unknown" else known_heading_prior(b, mcfg)).to(device)
        # (2) metric localization on the positive tile.
        t0 = time.perf_counter()
        if cfg.decoder_turns > 1:      # the ensemble decodes every allowed alignment: no search first
            tiles = _stack(refs, positives[idx.start:idx.stop, 0], "aerial").to(device)
            ens = [_turn_ensemble(model, grounds, j, tiles[j], prior[j].cpu().numpy(), cfg.decoder_turns)
                   for j in range(b)]
            out = {name: np.concatenate([e[0][name] for e in ens]) for name in ens[0][0]}
            offsets = np.array([e[1] for e in ens])
        else:
            out, offsets = _decode_searched(model, ground, np.arange(b),
                                            bank.features_of(positives[idx.start:idx.stop, 0]), prior, n_align)
        times["decoder_positive_ms"] += (time.perf_counter() - t0) * 1e3
        d = out["D"]
        for j, (i, it) in enumerate(zip(idx, items)):
            row, col = map_pixel(d[j])
            truth = it["pixel"].numpy()
            loc_err.append(float(np.hypot(row - truth[0], col - truth[1]) * float(it["mpp"])))
            yaw_est.append(_read_yaw(model, out, j, row, col, offsets[j]))
            yaw_true.append(float(it["yaw_deg"]) - rolls[i] * 360.0 / width)
            rec = queries.index.panoramas[i]
            truth_index = paper_truth_index(float(rec.offsets[0, 0]), float(rec.offsets[0, 1]),
                                            queries.index.meta[rec.city].tile_px, refs.aerial_size)
            paper_err.append(paper_pixel_error_m(d[j], truth_index, refs.tile_mpp(int(positives[i, 0]))))
        # (3) the full pipeline on the top-k.
        for j, (i, it) in enumerate(zip(idx, items)):
            t0 = time.perf_counter()
            scores, cand = ensemble_search(index.search, bank.globals, qglobal[i], k, cfg.turns, len(refs))
            times["search_ms"] += (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            ck, _ = _decode_searched(model, ground, np.full(k, j), bank.features_of(cand),
                                     prior[j:j + 1].expand(k, -1), n_align)
            order, combined = rerank(scores, ck[rerank_output(cfg.rerank_score)])
            order_other, _ = rerank(scores, ck[rerank_output(other)])
            order_cons, _ = consensus(ck["D"], _tile_centers(refs, cand), [refs.tile_mpp(int(t)) for t in cand],
                                      combined)
            picks = (int(order[0]), 0, int(order_other[0]), int(order_cons[0]))
            dk = ck["D"]
            if cfg.decoder_turns > 1:      # the ensemble's D on each tile a re-ranking variant chooses
                dk = dk.copy()
                for t in set(picks):
                    dk[t] = _turn_ensemble(model, grounds, j, refs[int(cand[t])]["aerial"].to(device),
                                           prior[j].cpu().numpy(), cfg.decoder_turns)[0]["D"][0]
            times["decoder_topk_ms"] += (time.perf_counter() - t0) * 1e3
            lat, lon = (float(v) for v in it["latlon"])
            errs = []
            for t in picks:
                row, col = map_pixel(dk[t])
                plat, plon = _pixel_to_latlon(refs, int(cand[t]), row, col)
                e, nn = enu_offset_m(lat, lon, plat, plon)
                errs.append(float(np.hypot(e, nn)))
            pipe_err.append(errs[0])
            pipe_err_norerank.append(errs[1])
            pipe_err_other.append(errs[2])
            pipe_err_consensus.append(errs[3])
            rerank_top1.append(int(cand[order[0]]) == int(positives[i, 0]))
            cand_all.append(np.asarray(cand[:k], dtype=np.int64))
            fused_all.append(np.asarray(combined[:k], dtype=np.float64))
            top1_any_after.append(int(cand[order[0]]) in positives[i].tolist())
            consensus_top1.append(int(cand[order_cons[0]]) == int(positives[i, 0]))
            if len(examples) < keep_examples:
                best = int(order[0])
                row, col = map_pixel(dk[best])
                examples.append({
                    "pano": images[j], "candidates": [int(cand[t]) for t in order[:3]],
                    "positives": positives[i].tolist(), "D": dk[best], "estimate": (row, col),
                    "truth": _latlon_to_pixel(refs, int(cand[best]), lat, lon), "error_m": errs[0],
                    "mode": mode})
    scores = np.stack([best_alignment_scores(q, bank.globals) for q in qglobal])
    result = {
        "paper": paper_block(scores, positives, np.stack(cand_all), np.stack(fused_all),
                             np.array(top1_any_after), paper_err, cfg.rerank_score),
        "retrieval": retrieval_metrics(scores, positives[:, 0], positives[:, 1:]),
        "retrieval_after_rerank_R@1": float(np.mean(rerank_top1)),
        "retrieval_after_consensus_R@1": float(np.mean(consensus_top1)),
        "localization_on_positive": distance_stats(loc_err),
        "yaw": yaw_stats(yaw_est, yaw_true),
        "pipeline": {"with_rerank": {**recall_at_distances(pipe_err), **distance_stats(pipe_err)},
                     "without_rerank": {**recall_at_distances(pipe_err_norerank), **distance_stats(pipe_err_norerank)},
                     f"with_rerank_{other}": {
                         **recall_at_distances(pipe_err_other), **distance_stats(pipe_err_other)},
                     "with_consensus": {**recall_at_distances(pipe_err_consensus), **distance_stats(pipe_err_consensus)},
                     "rerank_score": cfg.rerank_score, "top_k": k},
        "ms_per_query": {k2: round(v / n, 2) for k2, v in times.items()},
    }
    return result, examples


def paper_block(scores, positives, candidates, fused, top1_any_after, errors_m, rerank_score: str) -> dict:
    """The paper's metrics as the authors' evaluator computes them (see :mod:`.metrics`).

    ``scores`` (Q, N) retrieval scores; ``positives`` (Q, 4) tile indices, primary first;
    ``candidates`` / ``fused`` (Q, k) the top-k and their re-ranking scores ``s_t + m_t``;
    ``top1_any_after`` (Q,) whether the re-ranking's first tile is one of the four;
    ``errors_m`` (Q,) localization errors on the primary positive (paper pixel convention)."""
    scores = np.asarray(scores)
    positives = np.asarray(positives)
    primary = positives[:, 0]
    n_refs = scores.shape[1]
    ranks = positive_ranks(scores, primary) + 1
    hits = vigor_hits(scores, primary, positives[:, 1:])
    top1_any = (positives == scores.argmax(axis=1)[:, None]).any(axis=1)
    post_ranks = reranked_ranks(ranks, candidates, fused, primary)
    post_hits = official_hits(candidates, fused, positives, hits)
    return {
        "retrieval_before_rerank": paper_retrieval_metrics(ranks, hits, top1_any, n_refs),
        "retrieval_after_rerank": paper_retrieval_metrics(post_ranks, post_hits, top1_any_after, n_refs),
        "localization_on_primary": paper_localization_metrics(errors_m),
        "lf_cvgl_before_rerank": gated_recall(errors_m, ranks == 1),
        "lf_cvgl_after_rerank": gated_recall(errors_m, post_ranks == 1),
        "rerank_score": rerank_score, "top_k": int(np.asarray(candidates).shape[1]),
    }


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    from ..data.vigor import VigorQueryDataset, VigorReferenceDataset
    from ..model.ops import pick_device

    cfg = cfg.resolved()
    if cfg.heading not in ("known", "unknown", "both"):
        raise ValueError(f"heading mode: expected known, unknown or both, got {cfg.heading!r}")
    device = pick_device(cfg.device)
    model, payload = load_checkpoint(cfg.weights)
    model = model.to(device).eval()
    mcfg = model.cfg
    queries = VigorQueryDataset(cfg.data, cfg.protocol, cfg.split, cfg.cities, cfg.labels,
                                ground_size=mcfg.ground_size, aerial_size=mcfg.aerial_size)
    refs = VigorReferenceDataset(queries.index, ground_size=mcfg.ground_size, aerial_size=mcfg.aerial_size)
    if len(queries) == 0 or len(refs) == 0:
        raise ValueError(f"{cfg.data}: no queries or references for protocol {cfg.protocol!r}, split {cfg.split!r}")
    t0 = time.perf_counter()
    check_decoder_turns(cfg.decoder_turns)
    bank = ReferenceBank(model, refs, device, cfg.batch_size, progress=progress, turns=check_turns(cfg.turns))
    modes = ["known", "unknown"] if cfg.heading == "both" else [cfg.heading]
    report = {"data": str(cfg.data), "weights": str(cfg.weights), "model_hash": model.state_hash(),
              "config": mcfg.name, "protocol": cfg.protocol, "split": cfg.split,
              "cities": sorted({r.city for r in queries.index.panoramas}), "device": str(device),
              "eval_config": asdict(cfg)}
    examples = []
    for mode in modes:
        result, ex = evaluate_mode(model, queries, refs, bank, mode, cfg, device, progress,
                                   keep_examples=cfg.png_queries if cfg.png else 0)
        report[f"{mode}_heading"] = result
        examples += ex
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if cfg.png:
        from .plots import query_sheet

        report["png"] = str(query_sheet(examples, refs, cfg.png))
    return report
