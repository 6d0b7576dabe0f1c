"""FAISS indexes over the tiles' global descriptors (unit vectors: inner product = cosine).

* ``flat``: exact inner product (``IndexFlatIP``); the default up to :data:`FLAT_MAX` tiles.
* ``pqfs``: a 4-bit product-quantizer fast scan over all tiles (``PQ{D/2}x4fs``, D/4 bytes per
  tile) whose best ``k *`` :data:`REFINE_K_FACTOR` are re-scored exactly (``IndexRefineFlat``);
  the default above :data:`FLAT_MAX`.
* ``hnsw``: ``IndexHNSWFlat`` (inner product), ``M`` = :data:`HNSW_M`, construction depth
  :data:`HNSW_EF_CONSTRUCTION`, search depth :data:`HNSW_EF_SEARCH`.
* ``ivf``: ``IndexIVFFlat`` with ``nlist ~ 4 sqrt(N)`` lists, ``nprobe`` :data:`IVF_NPROBE`.

Why ``pqfs`` above the threshold (``unifygeo bench retrieval``, random 192-d unit
descriptors, the worst case since real descriptors cluster; one thread on this project's
2-core CPU; the README has the table): at 1 M tiles exact search takes 61 ms per query and
the refined fast scan 2.8 ms at recall@5 0.995-0.998 against it (refine factor 128; 64
gives 0.987-0.994); at 100k tiles neither HNSW nor IVF reached recall@5 0.99 at the
settings swept (best 0.89 and 0.75). On a machine with GPU FAISS the flat and IVF indexes
are moved to the GPU for search.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("unifygeo_ros.database")

FLAT_MAX = 100_000
REFINE_K_FACTOR = 128
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVF_NPROBE = 64
TRAIN_MAX = 100_000
INDEX_KINDS = ("auto", "flat", "pqfs", "hnsw", "ivf")


def choose_kind(n: int, kind: str = "auto") -> str:
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind: expected one of {INDEX_KINDS}, got {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n <= FLAT_MAX else "pqfs"


def ivf_nlist(n: int) -> int:
    return int(max(1, min(65536, 4 * round(math.sqrt(n)))))


def build_index(desc: np.ndarray, kind: str = "auto", hnsw_m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = HNSW_EF_SEARCH,
                nlist: int | None = None, nprobe: int = IVF_NPROBE, k_factor: int = REFINE_K_FACTOR,
                seed: int = 0):
    """A CPU index holding ``desc`` (N, D) float32 in order (ids 0..N-1)."""
    import faiss

    desc = np.ascontiguousarray(desc, dtype=np.float32)
    n, d = desc.shape
    kind = choose_kind(n, kind)
    rng = np.random.default_rng(seed)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "pqfs":
        m = d // 2 if d % 2 == 0 else d
        index = faiss.IndexRefineFlat(faiss.index_factory(d, f"PQ{m}x4fs", faiss.METRIC_INNER_PRODUCT))
        index.k_factor = float(k_factor)
        index.train(desc if n <= TRAIN_MAX else desc[rng.choice(n, TRAIN_MAX, replace=False)])
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        nlist = nlist or ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        train = desc if n <= 64 * nlist else desc[rng.choice(n, 64 * nlist, replace=False)]
        index.train(train)
        index.nprobe = min(nprobe, nlist)
    else:  # pragma: no cover - choose_kind validates
        raise ValueError(kind)
    index.add(desc)
    return index


def index_kind(index) -> str:
    import faiss

    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexRefine):
        return "pqfs"
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(base, faiss.IndexIVF):
        return "ivf"
    return "flat"


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def to_search_device(index):
    """The index on the GPU when GPU FAISS is installed (flat and IVF), else unchanged."""
    if not gpu_available() or index_kind(index) == "hnsw":
        return index
    import faiss

    res = faiss.StandardGpuResources()
    log.info("FAISS: searching on the GPU")
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    gpu._resources = res     # keep the resources alive with the index
    return gpu
