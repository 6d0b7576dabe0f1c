"""``unifygeo bench retrieval``: FAISS index types at database scale.

Descriptors are random unit vectors of the model's dimension (real descriptors are not
uniform: they cluster by place, which makes approximate search easier, so these figures
are a worst case). Two query sets, 200 queries each by default:

* ``matching``: each query is a noisy copy of one database vector (cosine 0.7 with it),
  like a real query and its positive tile; ``recall@1`` asks whether that tile is found;
* ``random``: uniform unit vectors (no true neighbour: the top-5 are near-ties).

``recall@5`` is the share of the exact top-5 (flat inner product) that the index returns.
Latency: one query at a time (top-5), median. ``--threads`` FAISS threads for building and
searching (default 1: on a shared 2-core CPU OpenMP threads that wait for a busy core make
multi-threaded runs slower and erratic). Memory: the
serialized index size and the process's resident-memory growth while building it.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from ..database.index import (
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_NPROBE,
    REFINE_K_FACTOR,
    build_index,
    ivf_nlist,
)
from .bench_model import rss_mb

TOP_K = 5


def random_unit(n: int, d: int, rng: np.random.Generator, chunk: int = 200_000) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
        out[s:s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def matching_queries(db: np.ndarray, q: int, rng: np.random.Generator, cosine: float = 0.7):
    idx = rng.choice(len(db), q, replace=False)
    noise = random_unit(q, db.shape[1], rng)
    noise -= (noise * db[idx]).sum(1, keepdims=True) * db[idx]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = cosine * db[idx] + np.sqrt(1 - cosine ** 2) * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), idx


def _latency_and_ids(index, queries: np.ndarray) -> tuple[float, np.ndarray]:
    times, ids = [], []
    for q in queries:
        t = time.perf_counter()
        _, i = index.search(q[None], TOP_K)
        times.append((time.perf_counter() - t) * 1e3)
        ids.append(i[0])
    return float(np.median(times)), np.asarray(ids)


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g.tolist()) & set(e.tolist())) / TOP_K for g, e in zip(got, exact)]))


def bench_retrieval(sizes, kinds, dim: int | None = None, queries: int = 200, threads: int = 1,
                    hnsw_m: int | None = None, ef_search=None, nprobe=None, k_factor=None, seed: int = 0,
                    progress: bool = True) -> dict:
    import faiss

    from ..model_config import SMALL

    dim = dim or SMALL.descriptor_dim
    hnsw_m = hnsw_m or HNSW_M
    ef_search = ef_search or [32, 64, HNSW_EF_SEARCH, 256, 512]
    nprobe = nprobe or [16, 32, IVF_NPROBE, 128, 256]
    k_factor = k_factor or sorted({4, 16, 64, REFINE_K_FACTOR})
    report: dict = {"dim": dim, "queries": queries, "top_k": TOP_K, "search_threads": threads,
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "processor": platform.processor()},
                    "faiss": faiss.__version__, "note": __doc__.split("\n\n")[1].replace("\n", " "), "sizes": {}}
    for n in sizes:
        rng = np.random.default_rng((seed, n))
        if progress:
            sys.stderr.write(f"bench retrieval: {n:,} tiles x {dim}-d\n")
        db = random_unit(n, dim, rng)
        qm, positives = matching_queries(db, queries, rng)
        qr = random_unit(queries, dim, rng)
        exact_index = faiss.IndexFlatIP(dim)
        exact_index.add(db)
        faiss.omp_set_num_threads(threads)
        exact_m = exact_index.search(qm, TOP_K)[1]
        exact_r = exact_index.search(qr, TOP_K)[1]
        del exact_index
        per: dict = {}
        for kind in kinds:
            faiss.omp_set_num_threads(threads)
            rss0 = rss_mb()
            t = time.perf_counter()
            index = build_index(db, kind, hnsw_m=hnsw_m)
            build_s = time.perf_counter() - t
            rss1 = rss_mb()
            entry = {"build_s": round(build_s, 2), "index_mb": round(len(faiss.serialize_index(index)) / 1e6, 1),
                     "rss_growth_mb": round(rss1 - rss0, 1), "settings": []}
            if kind == "hnsw":
                entry["params"] = {"M": hnsw_m, "efConstruction": index.hnsw.efConstruction}
                sweep = [("efSearch", v) for v in ef_search]
            elif kind == "ivf":
                entry["params"] = {"nlist": ivf_nlist(n)}
                sweep = [("nprobe", v) for v in nprobe if v <= ivf_nlist(n)]
            elif kind == "pqfs":
                entry["params"] = {"pq": f"PQ{dim // 2}x4fs", "refine": "exact (IndexRefineFlat)"}
                sweep = [("k_factor", v) for v in k_factor]
            else:
                sweep = [("exact", 0)]
            faiss.omp_set_num_threads(threads)
            for name, value in sweep:
                if name == "efSearch":
                    index.hnsw.efSearch = value
                elif name == "nprobe":
                    index.nprobe = value
                elif name == "k_factor":
                    index.k_factor = float(value)
                lat_m, got_m = _latency_and_ids(index, qm)
                lat_r, got_r = _latency_and_ids(index, qr)
                entry["settings"].append({
                    name: value, "median_ms": round(float(np.median([lat_m, lat_r])), 3),
                    "median_ms_matching": round(lat_m, 3), "median_ms_random": round(lat_r, 3),
                    "recall@5_matching": _recall(got_m, exact_m), "recall@5_random": _recall(got_r, exact_r),
                    "recall@1_positive": float(np.mean(got_m[:, 0] == positives)),
                })
            ok = [s for s in entry["settings"] if min(s["recall@5_matching"], s["recall@5_random"]) >= 0.99]
            entry["best_meeting_recall_0.99"] = min(ok, key=lambda s: s["median_ms"]) if ok else None
            per[kind] = entry
            del index
        report["sizes"][str(n)] = per
        del db
    return report


def format_retrieval(r: dict) -> str:
    lines = [f"retrieval benchmark: {r['dim']}-d random unit descriptors, top-{r['top_k']}, {r['queries']} queries "
             f"per set, {r['search_threads']} search thread(s)",
             f"{'tiles':>9} {'index':>5} {'setting':>14} {'build s':>8} {'index MB':>9} {'ms':>8} "
             f"{'R@5 match':>9} {'R@5 rand':>9} {'R@1 pos':>8}"]
    for n, per in r["sizes"].items():
        for kind, e in per.items():
            for s in e["settings"]:
                key = next(k for k in s if k in ("efSearch", "nprobe", "k_factor", "exact"))
                setting = "exact" if key == "exact" else f"{key}={s[key]}"
                lines.append(f"{int(n):>9,} {kind:>5} {setting:>14} {e['build_s']:>8.1f} {e['index_mb']:>9.1f} "
                             f"{s['median_ms']:>8.3f} {s['recall@5_matching']:>9.3f} {s['recall@5_random']:>9.3f} "
                             f"{s['recall@1_positive']:>8.3f}")
    return "\n".join(lines)
