"""The ROS-free localizer: one camera frame in, a geo-referenced pose with covariance out.

Per frame (``Localizer.localize``):

1. **preprocess**: check the image, resize it to the model's panorama (a pinhole image is
   placed in the panorama frame with a column mask, a camera rig's images are composed into
   one masked panorama), turn it to face tile-up when the heading is known;
2. **ground**: the ground branch, on the ``R`` sub-stride copies when the heading is not
   known (the decoder's heading search needs them), else on one;
3. **search**: FAISS top-k over the tiles' global descriptors (only tiles near a
   :class:`PositionPrior` when one is given); without a known heading a tile scores its
   best cosine over the heading alignments allowed (:mod:`unifygeo_ros.inference.retrieval`);
4. **aerial**: the k candidates' aerial features, read from the database (``stored``) or
   re-encoded from its pixels (``recompute``);
5. **decoder**: the decoder on the k candidates as one batch, heading log-prior: known /
   window (:class:`HeadingPrior`) / none. Without a known heading, the alignment search
   (:mod:`unifygeo_ros.inference.alignment_search`) then re-decodes each candidate at its
   ``alignment_candidates`` best alignments and their neighbours and keeps the best
   matching one (0 turns it off: the decoder's own max-M^0 choice);
6. **tile choice**: re-ranking (retrieval score + the matching score of every level, or
   max M^0 as in the paper's Eq. 4: ``rerank_score``), then, by default, the consensus of
   the candidates' D (:func:`unifygeo_ros.inference.rerank.consensus`: the candidate whose MAP
   position the other overlapping candidates confirm; ``tile_choice = "rerank"``: the
   paper's best re-ranked tile);
7. **decoder ensemble** (``decoder_turns = 4``, the default): the chosen tile is decoded again by the rotation ensemble of
   :mod:`unifygeo_ros.inference.decoder_ensemble` (the tile turned by 0-3 quarters through the
   aerial branch, every allowed alignment; with ``decoder_turns = 8`` also the mirrored tile
   in its four turns against the mirrored panorama), which replaces its D, alignment and yaw field;
   its pixels come from the database (``recompute``) or the source orthophotos
   (``stored``, kept for the last :data:`TURNED_CACHE_TILES` tiles); where they cannot be
   read the frame goes on without the ensemble (logged once, ``diagnostics``);
8. **posterior**: D's MAP pixel on the chosen tile
   -> map x, y and latitude / longitude, yaw from the alignment (refined within the bin by
   the search) and the yaw field, the covariance of the chosen mode and the confidence (the
   calibrated chance that the chosen mode is the right place) (:mod:`.posterior`);
9. **abstention**: whether the frame is evidence of where the camera is at all
   (:mod:`unifygeo_ros.inference.abstention`: the chosen tile's retrieval + matching score,
   D's peak and the frame's fine detail, against the model's calibrated thresholds); a
   frame that is not is returned with ``fix = False`` and the reason.

A frame that cannot be localized raises :class:`LocalizationError`; the localizer keeps
no per-frame state, so the next frame is unaffected.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from ..conventions import wrap_deg_180
from ..inference import posterior
from ..inference.abstention import decide, frame_features
from ..inference.alignment_search import one_hot_logprior, search_alignments
from ..inference.calibration import Calibration, apply_confidence, calibration_case, lookup_calibration
from ..inference.decoder_ensemble import (
    check_decoder_turns,
    decode_turn_ensemble,
    is_mirrored,
    member_tiles,
    mirror_panorama,
)
from ..inference.preprocess import (
    check_image,
    check_rig_images,
    ground_input,
    image_detail,
    normalize_images,
)
from ..inference.rerank import check_tile_choice, consensus, rerank, rerank_output
from ..inference.retrieval import query_descriptors, search_tiles
from ..options import default
from ..types import (
    Camera,
    Candidate,
    DatabaseError,
    HeadingPrior,
    LocalizationError,
    LocalizationResult,
    PositionPrior,
    Rig,
)

log = logging.getLogger("unifygeo_ros.localizer")


#: Tiles whose turned aerial features the decoder ensemble keeps (stored-features databases).
TURNED_CACHE_TILES = 64

#: Databases up to this many tiles (exact index) are searched by FAISS on one thread.
SINGLE_THREAD_SEARCH_TILES = 100_000


def single_thread_blas() -> None:
    """Limit the process's OpenBLAS libraries (numpy's, FAISS's) to one thread.

    The localizer's own matrix products (retrieval re-scoring, posterior) are small, and
    OpenBLAS worker threads keep spinning after each one, on the cores the network's
    backend needs next: on the 2-core development CPU the unknown-heading decoder took
    148-171 ms instead of 93-124 ms (ONNX Runtime, `unifygeo bench localize`). PyTorch's
    and ONNX Runtime's own thread pools are not touched."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _check_search_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ValueError(f"search_threads: expected >= 1, got {threads}")


def set_search_threads(threads: int | None, tiles: int) -> int:
    """FAISS's OpenMP threads for retrieval: ``threads``, or (None) one thread for databases
    up to :data:`SINGLE_THREAD_SEARCH_TILES` tiles, where a search over 32 heading
    alignments takes well under a millisecond on one thread but about 10 ms of OpenMP
    wake-ups on two (measured on the demo's 225 tiles), and FAISS's default (every core) above,
    where parallel search pays. Returns the number set (0: left at FAISS's default)."""
    import faiss

    _check_search_threads(threads)
    n = threads if threads is not None else (1 if tiles <= SINGLE_THREAD_SEARCH_TILES else 0)
    if n:
        faiss.omp_set_num_threads(int(n))
    return int(n)


def _search_options(rerank_score: str, alignment_candidates: int, tile_choice: str = default("tile_choice")
                    ) -> tuple[str, int]:
    """Check the re-ranking, tile-choice and alignment-search options; return the decoder
    output the re-ranking uses and the number of alignment candidates."""
    check_tile_choice(tile_choice)
    if int(alignment_candidates) < 0:
        raise ValueError(f"alignment_candidates: expected >= 0 (0: no alignment search), got {alignment_candidates}")
    return rerank_output(rerank_score), int(alignment_candidates)


def _distributions(out: dict) -> np.ndarray:
    """The decoder's D of every candidate (K, L, L, pixels of the database's tiles), or a
    failed frame where it is not finite."""
    d_all = np.asarray(out["D"], dtype=np.float64)
    if not np.all(np.isfinite(d_all)):
        raise LocalizationError("the decoder produced a non-finite distribution D for this image")
    return d_all


class Localizer:
    """Open with :meth:`open`; see the module docstring and :mod:`unifygeo_ros.types` for the contract."""

    def __init__(self, db, backend, top_k: int, calibration: Calibration,
                 rerank_score: str = default("rerank_score"),
                 alignment_candidates: int = default("alignment_candidates"),
                 decoder_turns: int = default("decoder_turns"), tile_choice: str = default("tile_choice")):
        from collections import OrderedDict

        from ..model_config import get_config

        self.db = db
        self.backend = backend
        self.backend_name = backend.name
        self.manifest = db.manifest
        self.frame = db.frame
        self.set_options(top_k=top_k, rerank_score=rerank_score, alignment_candidates=alignment_candidates,
                         decoder_turns=decoder_turns, tile_choice=tile_choice)
        # (tile, decoder turns) -> the turned members' features, or why not
        self._turned: OrderedDict[tuple[int, int], list[np.ndarray] | str] = OrderedDict()
        self._turned_warned = False
        self.cfg = get_config(db.manifest["model"]["config"])
        self.calibration = calibration
        self.heading_scale = float(db.manifest["model"].get("heading_scale", 1.0))
        self.retrieval_scale = float(db.manifest["model"].get("retrieval_scale", 1.0 / 0.07))

    # ---- construction -------------------------------------------------------------------------
    def set_options(self, top_k: int, rerank_score: str, alignment_candidates: int, decoder_turns: int,
                    tile_choice: str) -> None:
        """Set the search options (also while running); ValueError naming the option, and
        nothing changed, when one is not allowed."""
        if isinstance(top_k, bool) or int(top_k) < 1:
            raise ValueError(f"top_k: expected an integer >= 1, got {top_k!r}")
        output, candidates = _search_options(rerank_score, alignment_candidates, tile_choice)
        turns = check_decoder_turns(decoder_turns)
        self.top_k = int(top_k)
        self.rerank_score = rerank_score
        self.rerank_output, self.alignment_candidates = output, candidates
        self.tile_choice = tile_choice
        self.decoder_turns = turns

    @classmethod
    def open(cls, db: str | Path, backend: str = default("backend"), engines: str | Path | None = None,
             top_k: int = default("top_k"), weights: str | Path | None = None, threads: int | None = None,
             fp16: bool = True, calibration: Calibration | None = None,
             rerank_score: str = default("rerank_score"),
             alignment_candidates: int = default("alignment_candidates"), search_threads: int | None = None,
             decoder_turns: int = default("decoder_turns"), tile_choice: str = default("tile_choice"),
             verify: str = "quick") -> "Localizer":
        """Open database ``db`` and the backend that will run the model it was built with.

        ``backend``: ``auto`` (fastest available, logged), ``torch``, ``onnxruntime`` or an
        exact name (``registry.BACKEND_ORDER``). ``engines``: a folder with the model's ONNX
        export / TensorRT engines (default: ``db/engines``, created on first use).
        ``weights``: a checkpoint to use instead of ``db/model.pt``; it must be the model the
        database was built with. ``rerank_score``: ``matching`` (every level) or ``m0``
        (Eq. 4); ``tile_choice``: ``consensus`` (default: the candidate the overlapping
        candidates' D confirm, :func:`unifygeo_ros.inference.rerank.consensus`) or ``rerank`` (the
        best re-ranked tile, as in the paper); ``alignment_candidates``: alignments searched per candidate tile when the
        heading is not known (0: none). ``decoder_turns``: 4 runs the decoder's rotation
        ensemble on the chosen tile, 8 adds the mirror images, 1 runs none (about 4 / 8 decoder
        rows more per frame with a known heading, 4 K / 8 K with an unknown one). ``search_threads``: FAISS threads (default: one for
        databases up to 100,000 tiles, every core above; see :func:`set_search_threads`).
        ``verify``: how much of the database's integrity record is checked at open, ``quick``
        or ``full`` (:class:`unifygeo_ros.database.store.Database`).
        Raises :class:`DatabaseError` on a bad database or model.
        """
        from ..backends.onnx_files import EnginesMismatch
        from ..backends.registry import open_backend
        from ..database.store import Database

        if top_k < 1:
            raise ValueError(f"top_k: expected >= 1, got {top_k}")
        _search_options(rerank_score, alignment_candidates, tile_choice)     # refuse bad options before opening anything
        check_decoder_turns(decoder_turns)
        _check_search_threads(search_threads)
        database = Database(db, verify=verify)
        model_hash = database.model_hash
        weights_path = Path(weights) if weights else database.model_path
        loaded: dict = {}

        def load_model():
            if "model" not in loaded:
                from ..model.unifygeo import load_checkpoint

                model, _ = load_checkpoint(weights_path)
                got = model.state_hash()
                if got != model_hash:
                    raise DatabaseError(f"{weights_path} is model {got[:12]}, but {database.path} was built with "
                                        f"model {model_hash[:12]}: rebuild the database with this model, or use "
                                        f"the weights it was built with")
                loaded["model"] = model
            return loaded["model"]

        if weights:
            load_model()          # refuse a different model now, not at the first frame
        try:
            be = open_backend(backend, model_hash, engines or database.path / "engines", load_model=load_model,
                              onnx_dir_owned=engines is None, threads=threads, fp16=fp16)
        except EnginesMismatch as exc:
            raise DatabaseError(str(exc)) from None
        single_thread_blas()
        set_search_threads(search_threads, database.n)
        cal = calibration or lookup_calibration(model_hash)
        if cal.source == "none":
            log.warning("no covariance calibration for model %s: covariances are unscaled", model_hash[:12])
        if not cal.abstention:
            log.warning("no abstention thresholds for model %s: every frame is reported as a fix (run `unifygeo "
                        "calibrate --write`)", model_hash[:12])
        return cls(database, be, top_k, cal, rerank_score, alignment_candidates, decoder_turns, tile_choice)

    def warmup(self) -> None:
        """Run one frame through every stage (first-call allocations, lazy engine set-up)."""
        h, w = self.cfg.ground_size
        rng = np.random.default_rng(0)
        pano = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        self.localize(pano)

    def close(self) -> None:
        self.backend.close()

    # ---- one frame ----------------------------------------------------------------------------
    def localize(self, image: np.ndarray | list, camera: Camera | Rig = Camera(), heading: float | None = None,
                 prior: PositionPrior | HeadingPrior | tuple | None = None,
                 return_distribution: bool = False, decoder_turns: int | None = None) -> LocalizationResult:
        """Localize one frame. ``heading``: known ENU yaw (map frame) of the camera's forward
        direction; ``prior``: a :class:`PositionPrior`, a :class:`HeadingPrior` or a tuple of
        both. With a :class:`Rig`, ``image`` is the list of its cameras' images (one frame: they
        are composed into one panorama facing the rig's forward direction, whose yaw
        ``heading`` and the result's yaw are). ``decoder_turns``: the decoder ensemble of this
        frame (default: the localizer's option). Raises :class:`LocalizationError` when the frame
        cannot be localized."""
        try:
            turns = self.decoder_turns if decoder_turns is None else check_decoder_turns(decoder_turns)
        except ValueError as exc:
            raise LocalizationError(str(exc)) from None
        try:
            return self._localize(image, camera, heading, prior, return_distribution, turns)
        except LocalizationError:
            raise
        except Exception as exc:      # a backend or library failure must not take the caller down
            log.exception("frame failed")
            raise LocalizationError(f"the frame could not be localized: {type(exc).__name__}: {exc}") from exc

    def _priors(self, prior, heading):
        pos, head = None, None
        items = prior if isinstance(prior, tuple) else (prior,) if prior is not None else ()
        for p in items:
            if isinstance(p, PositionPrior):
                pos = p
            elif isinstance(p, HeadingPrior):
                head = p
            elif p is not None:
                raise LocalizationError(f"prior: expected PositionPrior, HeadingPrior or a tuple of them, got "
                                        f"{type(p).__name__}")
        if heading is not None:
            if not isinstance(heading, (int, float, np.floating, np.integer)) or not math.isfinite(float(heading)):
                raise LocalizationError(f"heading: expected a finite ENU yaw in degrees or None, got {heading!r}")
            if head is not None:
                raise LocalizationError("heading: give either a known heading or a HeadingPrior, not both")
        return pos, head

    def _localize(self, image, camera, heading, prior, return_distribution, turns: int) -> LocalizationResult:
        from ..inference.heading import (
            heading_window_prior,
            known_heading_prior,
            unknown_heading_prior,
        )

        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        cfg = self.cfg
        if not isinstance(camera, (Camera, Rig)):
            raise LocalizationError(f"camera: expected a Camera or a Rig, got {type(camera).__name__}")
        pos_prior, head_prior = self._priors(prior, heading)
        if isinstance(camera, Rig):
            image = check_rig_images(image, camera)
            detail = float(np.mean([image_detail(img) for img in image]))
        else:
            image = check_image(image, camera)
            detail = image_detail(image)
        pano, mask = ground_input(image, camera, cfg.ground_size, None if heading is None else float(heading))
        if heading is not None:
            mode = "known"
            logprior = known_heading_prior(1, cfg)[0]
        else:
            mode = "prior" if head_prior is not None else "unknown"
            logprior = (heading_window_prior(head_prior.yaw_deg, head_prior.half_width_deg, cfg) if head_prior
                        else unknown_heading_prior(1, cfg))[0]
        images, masks = self._ground_images(pano, mask, mode == "known")
        t1 = time.perf_counter()
        timings["preprocess"] = (t1 - t0) * 1e3

        g, descs, valid = self._encode_ground(images, masks)
        # One retrieval query per heading alignment the prior allows (one for a known heading).
        query = query_descriptors(g["global_rolls"], logprior, self.db.turns)
        if not np.all(np.isfinite(query)):
            raise LocalizationError("the ground branch produced non-finite descriptors for this image")
        t2 = time.perf_counter()
        timings["ground"] = (t2 - t1) * 1e3

        near = None if pos_prior is None else self.db.tiles_near(pos_prior.x, pos_prior.y, pos_prior.radius_m)
        scores, ids = search_tiles(self.db, query, self.top_k, near)
        if len(ids) == 0:
            where = (f" within {pos_prior.radius_m:g} m of ({pos_prior.x:.1f}, {pos_prior.y:.1f})" if pos_prior
                     else "")
            raise LocalizationError(f"no database tile{where}; expected a position prior inside the database's "
                                    f"area ({self.db.n} tiles)")
        t3 = time.perf_counter()
        timings["search"] = (t3 - t2) * 1e3

        k = len(ids)
        if self.db.feature_mode == "stored":
            feats = self.db.stored_features(ids)
        else:
            a = self.backend.encode_aerial(normalize_images(self.db.tile_pixels(ids)))
            feats = [a[f"aerial_feat{lv}"] for lv in range(4)]
        t4 = time.perf_counter()
        timings["aerial"] = (t4 - t3) * 1e3

        out = self._decode(descs, valid, feats, np.repeat(logprior[None].astype(np.float32), k, axis=0))
        offsets = np.zeros(k)
        if mode != "known" and self.alignment_candidates > 0:
            search = self._search_alignments(descs, valid, feats, out, logprior)
            out = {**search.per_tile(), "alignment_scores": out["alignment_scores"]}
            offsets = search.offset
        t5 = time.perf_counter()
        timings["decoder"] = (t5 - t4) * 1e3

        # Re-ranking, then the consensus of the candidates (tile_choice); the decoder ensemble
        # keeps the matching scores, so this order stands.
        order, combined = rerank(scores, np.asarray(out[self.rerank_output], dtype=np.float64))
        # The consensus support of every candidate: the tile choice (``consensus``) and, for
        # either choice, an input of the confidence.
        tiles = np.asarray(ids, dtype=np.int64)
        centers = np.stack([self.db.tiles["x"][tiles], self.db.tiles["y"][tiles]], axis=1)
        by_support, support = consensus(_distributions(out), centers, self.db.mpp, combined)
        if self.tile_choice == "consensus":
            order = by_support
        ensemble = {"decoder_turns": 1}
        if turns > 1:
            out, offsets, ensemble = self._decoder_ensemble(out, offsets, int(order[0]), ids, feats, (descs, valid),
                                                            logprior, (pano, mask, mode == "known"), turns)
        t6 = time.perf_counter()
        timings["ensemble"] = (t6 - t5) * 1e3
        result = self._posterior(out, order, combined, scores, ids, mode, logprior, heading, return_distribution,
                                 offsets, camera, float(support[int(order[0])]), detail, pos_prior is not None)
        result.diagnostics.update(ensemble)
        result.diagnostics["tile_choice"] = self.tile_choice
        if self.tile_choice == "consensus":
            result.diagnostics["consensus_support"] = support[order]
        t7 = time.perf_counter()
        timings["posterior"] = (t7 - t6) * 1e3
        timings["total"] = (t7 - t0) * 1e3
        result.timings_ms = {key: round(v, 3) for key, v in timings.items()}
        return result

    def _ground_images(self, pano: np.ndarray, mask: np.ndarray, known: bool) -> tuple[np.ndarray, np.ndarray]:
        """The ground branch's input: the panorama (and its column mask) as it is for a known
        heading, or in its ``R`` sub-stride rolls for the heading search."""
        if known:
            return normalize_images(pano[None]), mask[None]
        step = self.cfg.stride // self.cfg.heading_subdivisions
        rolls = range(self.cfg.heading_subdivisions)
        return (normalize_images(np.stack([np.roll(pano, -i * step, axis=1) for i in rolls])),
                np.stack([np.roll(mask, -i * step) for i in rolls]))

    def _encode_ground(self, images: np.ndarray, masks: np.ndarray):
        """The ground branch on ``images``: its outputs, and the decoder's per-level descriptors
        and column validity (1, R, ...) (a known heading's one copy repeated R times: only
        alignment 0 is allowed)."""
        r = self.cfg.heading_subdivisions
        g = self.backend.encode_ground(images, masks)
        n_copies = images.shape[0]
        descs = [g[f"ground_desc{lv}"].reshape(1, n_copies, *g[f"ground_desc{lv}"].shape[1:]) for lv in range(4)]
        valid = g["column_valid"].reshape(1, n_copies, -1)
        if n_copies != r:
            descs = [np.repeat(d, r, axis=1) for d in descs]
            valid = np.repeat(valid, r, axis=1)
        return g, descs, valid

    def _turned_features(self, tile: int, turns: int) -> list[np.ndarray] | str:
        """The aerial features of ``tile``'s ensemble members 1 .. turns-1
        (:func:`~unifygeo_ros.inference.decoder_ensemble.member_tiles`: the tile turned, and with 8
        members mirrored and turned; each (turns-1, C, h, h)), or why they cannot be had (the
        tile's pixels are gone)."""
        key = (tile, turns)
        if key in self._turned:
            self._turned.move_to_end(key)
            return self._turned[key]
        if self.db.feature_mode == "recompute":
            pixels, why = self.db.tile_pixels([tile])[0], ""
        else:
            pixels, why = self.db.tile_image(tile)
        if pixels is None:
            got: list[np.ndarray] | str = why
        else:
            turned = member_tiles(normalize_images(np.asarray(pixels)[None]), turns)[0, 1:]
            a = self.backend.encode_aerial(np.ascontiguousarray(turned))
            got = [np.asarray(a[f"aerial_feat{lv}"]) for lv in range(4)]
        self._turned[key] = got
        while len(self._turned) > TURNED_CACHE_TILES:
            self._turned.popitem(last=False)
        return got

    def _decode(self, descs, valid, aerial, logpriors: np.ndarray) -> dict:
        """The decoder through the backend, one row per log-prior row: the frame's ground
        descriptors repeated, ``aerial`` the per-level aerial features of each row."""
        m = len(logpriors)
        rows = {f"ground_desc{lv}": np.repeat(descs[lv], m, axis=0) for lv in range(4)}
        rows["column_valid"] = np.repeat(valid, m, axis=0)
        rows.update({f"aerial_feat{lv}": aerial[lv] for lv in range(4)})
        rows["heading_logprior"] = logpriors
        return self.backend.decode(rows)

    def _decoder_ensemble(self, out: dict, offsets: np.ndarray, best: int, ids, feats, ground: tuple,
                          logprior: np.ndarray, panorama: tuple, turns: int):
        """The decoder's rotation (and mirror) ensemble on candidate ``best``, the chosen
        tile: its D, yaw field, alignment and sub-bin offset are replaced in
        ``out``; the matching scores are kept, so that the re-ranking's order does not change.
        ``ground``: the frame's (descriptors, validity); ``panorama``: (pano, mask, known), from
        which the mirrored members' ground descriptors are computed."""
        tile = int(ids[best])
        turned = self._turned_features(tile, turns)
        if isinstance(turned, str):
            if not self._turned_warned:
                log.warning("decoder ensemble off for tiles whose pixels cannot be read (%s); frames go on "
                            "without it", turned)
                self._turned_warned = True
            return out, offsets, {"decoder_turns": 1, "decoder_turns_skipped": turned}
        tile_feats = [np.concatenate([np.asarray(feats[lv])[best:best + 1], turned[lv].astype(np.float32)])
                      for lv in range(4)]
        k_bins = self.cfg.heading_bins
        grounds = [ground]
        if turns == 8:
            pano, mask, known = panorama
            mirrored = self._ground_images(np.ascontiguousarray(pano[:, ::-1]), mirror_panorama(mask), known)
            grounds.append(self._encode_ground(*mirrored)[1:])      # the training's flip: columns reversed

        def decode_turn(j: int, aligns: np.ndarray) -> dict:
            descs, valid = grounds[int(is_mirrored(j))]
            return self._decode(descs, valid, [np.repeat(f[j:j + 1], len(aligns), axis=0) for f in tile_feats],
                                one_hot_logprior(aligns, k_bins))

        ens = decode_turn_ensemble(decode_turn, logprior, k_bins, turns)
        out = {name: np.array(v, copy=True) for name, v in out.items()}
        for name in ("D", "yaw_field", "alignment"):
            if name in out and name in ens.out:
                out[name][best] = ens.out[name][0]
        offsets = np.array(offsets, dtype=np.float64, copy=True)
        offsets[best] = ens.offset
        return out, offsets, {"decoder_turns": turns, "decoder_turns_decodes": ens.decodes}

    def _search_alignments(self, descs, valid, feats, first: dict, logprior: np.ndarray):
        """The alignment search on every candidate tile, decoding through the backend."""
        k_bins = self.cfg.heading_bins

        def decode_rows(tiles: np.ndarray, aligns: np.ndarray) -> dict:
            return self._decode(descs, valid, [np.asarray(f)[tiles] for f in feats], one_hot_logprior(aligns, k_bins))

        return search_alignments(decode_rows, np.asarray(first["alignment_scores"]), logprior,
                                 self.alignment_candidates, first=first)

    def _posterior(self, out, order, combined, scores, ids, mode, logprior, heading, return_distribution,
                   offsets, camera: Camera | Rig, support: float, detail: float,
                   position_prior: bool) -> LocalizationResult:
        """``order`` and ``combined``: the re-ranking of the candidates (``rerank``); ``support``:
        the chosen candidate's consensus support; ``detail``: the frame's fine detail
        (:func:`~unifygeo_ros.inference.preprocess.image_detail`); ``position_prior``: a
        position prior restricted the search (with ``mode``, the frame's calibration case)."""
        from ..inference.heading import ALIGNED_YAW_DEG, yaw_from_alignment

        cfg = self.cfg
        d_all = _distributions(out)
        m0 = np.asarray(out["m0_max"], dtype=np.float64)
        matching = np.asarray(out["match_score"], dtype=np.float64)
        best = int(order[0])
        tile = int(ids[best])
        d = d_all[best]
        stats = posterior.position_stats(d)
        x, y = self.db.pixel_to_xy(tile, stats.row, stats.col)
        estimate = np.array([float(x), float(y)])
        cov_d = posterior.cov_px_to_xy(stats.cov_px, self.db.mpp)

        # Each candidate's own MAP position: the weight of those that agree with the estimate
        # is part of the confidence (the covariance is the chosen mode's alone).
        cand_xy = np.zeros((len(ids), 2))
        for t in range(len(ids)):
            rr, cc = posterior.map_pixel(d_all[t])
            cand_xy[t] = self.db.pixel_to_xy(int(ids[t]), rr + 0.5, cc + 0.5)
        sigma_d = math.sqrt(max(np.trace(cov_d), 0.0))
        cov_c, agree, _ = posterior.candidate_mixture(cand_xy, estimate, combined, self.retrieval_scale,
                                                      max(posterior.AGREE_M, 2.0 * sigma_d))
        case = calibration_case(mode, position_prior)
        c_pos, c_yaw = self.calibration.scales(camera.model, case)
        cov_xy = cov_d * c_pos ** 2

        row_i, col_i = int(stats.row), int(stats.col)
        k_align = int(np.asarray(out["alignment"])[best])
        yaw_deg = None
        var_yaw = float("nan")
        yaw_info: dict = {}
        if "yaw_field" in out:
            field = np.asarray(out["yaw_field"][best], dtype=np.float64)
            phi = float(np.degrees(np.arctan2(field[1, row_i, col_i], field[0, row_i, col_i])))
            # The search's sub-bin refinement moves the alignment by a fraction of a bin.
            yaw = float(yaw_from_alignment(k_align + float(offsets[best]), phi, cfg))
            if heading is not None:
                # The panorama was turned to face tile-up (ENU 90): undo that turn.
                yaw = float(wrap_deg_180(phi - 90.0 + float(heading)))
            var_deg2, yaw_info = posterior.yaw_variance_deg2(
                out["alignment_scores"][best], logprior, self.heading_scale, k_align, cfg.heading_bin_deg,
                field, stats.mode_mask, d, row_i, col_i)
            yaw_deg = yaw
            var_yaw = math.radians(math.sqrt(var_deg2) * c_yaw) ** 2
        elif heading is None:
            # No yaw head (the released `vigor` models): the yaw of the chosen alignment, to a bin;
            # with a known heading the frame adds nothing to the heading it was given.
            yaw_deg = float(yaw_from_alignment(k_align + float(offsets[best]), ALIGNED_YAW_DEG, cfg))
            var_deg2, yaw_info = posterior.alignment_yaw_variance_deg2(
                out["alignment_scores"][best], logprior, self.heading_scale, k_align, cfg.heading_bin_deg)
            var_yaw = math.radians(math.sqrt(var_deg2) * c_yaw) ** 2
        cov = np.zeros((3, 3))
        cov[:2, :2] = cov_xy
        cov[2, 2] = var_yaw if yaw_deg is not None else 1e6
        raw_confidence = float(np.clip(stats.mode_mass * agree, 0.0, 1.0))
        confidence = apply_confidence(self.calibration.confidence_map(camera.model, case), raw_confidence,
                                      support)
        features = frame_features(float(scores[best]), float(matching[best]), float(d[row_i, col_i]), detail)
        decision = decide(features, self.calibration.abstention_thresholds(camera.model))
        lat, lon = self.frame.to_latlon(estimate[0], estimate[1])
        cands = []
        for t in order:
            cxy, cll = self.db.candidate_info(int(ids[t]))
            cands.append(Candidate(tile_id=int(ids[t]), retrieval_score=float(scores[t]), m0_max=float(m0[t]),
                                   matching_score=float(matching[t]), combined=float(combined[t]), center_xy=cxy, center_latlon=cll))
        res = LocalizationResult(
            latitude=float(lat), longitude=float(lon), x=float(estimate[0]), y=float(estimate[1]), yaw_deg=yaw_deg,
            covariance=cov, confidence=confidence, candidates=cands, tile_id=tile,
            pixel=(float(stats.row), float(stats.col)), heading_mode=mode, backend=self.backend_name,
            timings_ms={}, distribution=d.astype(np.float32) if return_distribution else None,
            fix=decision.fix, no_fix_reason=decision.reason, no_fix_features=decision.failed)
        res.diagnostics = {"mode_mass": stats.mode_mass, "support_mass": stats.support_mass,
                           "components": stats.components, "agree_weight": agree,
                           "confidence_raw": raw_confidence, "consensus_support_chosen": support,
                           "calibration_case": case,
                           "abstention_features": features,
                           "cov_d": cov_d, "cov_candidates": cov_c, "alignment": k_align,
                           "alignment_offset_bins": float(offsets[best]), "rerank_score": self.rerank_score,
                           "candidate_xy": cand_xy[order], **yaw_info}
        return res
