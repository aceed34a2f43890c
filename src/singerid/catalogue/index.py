"""FAISS index of track embeddings (inner product on L2-normalised vectors = cosine), exact or approximate.

- "flat": exact search (IndexFlatIP), the default up to ~1 M tracks.
- "hnsw": HNSW graph (M = 32), fast approximate search in memory.
- "ivfpq": inverted lists + product quantisation, for catalogues whose vectors do not fit in memory.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivfpq")


def auto_kind(n: int) -> str:
    return "flat" if n <= 1_000_000 else "ivfpq"


def build(kind: str, dim: int, train: np.ndarray | None = None, nlist: int | None = None, m: int | None = None) -> faiss.Index:
    """An empty ID-mapped index; IVF-PQ is trained on `train` (≥ 39 × nlist vectors recommended)."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        h = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efSearch = 128
        return faiss.IndexIDMap2(h)
    if kind == "ivfpq":
        if train is None:
            raise ValueError("ivfpq needs training vectors")
        if len(train) < 10_000:
            log.warning("ivfpq needs >= 10000 tracks to train its quantisers; exact search until then")
            return build("flat", dim)
        nlist = nlist or max(1, min(4096, int(4 * np.sqrt(len(train)))))
        m = m or next(x for x in (256, 128, 64, 32, 16, 8, 4, 2, 1) if dim % x == 0 and dim // x >= 4)  # ≤ 256 B/vector
        quant = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quant, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.train(np.ascontiguousarray(train, np.float32))
        ivf.nprobe = min(nlist, 64)
        return faiss.IndexIDMap2(ivf)
    raise ValueError(f"index kind must be one of {KINDS}")


def save(index: faiss.Index, folder: Path, max_id: int, kind: str) -> None:
    """Write atomically; temporary names are per process and thread, so concurrent writers never clash."""
    tag = f"{os.getpid()}-{threading.get_ident()}"
    tmp = folder / f".index.faiss.{tag}.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "index.faiss")
    tmpj = folder / f".index.json.{tag}.tmp"
    tmpj.write_text(json.dumps({"max_id": int(max_id), "ntotal": int(index.ntotal), "kind": kind}))
    os.replace(tmpj, folder / "index.json")


def load(folder: Path) -> tuple[faiss.Index, dict] | None:
    try:
        meta = json.loads((folder / "index.json").read_text())
        return faiss.read_index(str(folder / "index.faiss")), meta
    except (OSError, ValueError, RuntimeError):
        return None


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[Q, D] → (scores [Q, k], ids [Q, k]); ids -1 where fewer than k tracks."""
    return index.search(np.ascontiguousarray(queries, np.float32), k)
