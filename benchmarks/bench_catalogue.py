"""Catalogue search at scale on synthetic L2-normalised vectors (clustered like singers' tracks): query latency p50 /
p99 and recall@10 against exact search, build time, and memory per million tracks, for the FAISS index kinds.

    python benchmarks/bench_catalogue.py [--sizes 100000 1000000] [--dim 2048] [--queries 200]
"""
from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from singerid.catalogue import index as cindex


def vectors(n: int, dim: int, rng, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 50_000):
        m = min(50_000, n - i)
        x = centres[rng.integers(len(centres), size=m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bytes_of(index) -> int:
    return len(faiss.serialize_index(index))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    ap.add_argument("--hnsw-max", type=int, default=200_000, help="skip HNSW builds above this size (slow on 2 cores)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {a.dim}")
    print(f"{'n':>9s} {'index':6s} {'build s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'recall@10':>9s} {'MB/1M tracks':>13s}")
    for n in a.sizes:
        centres = rng.standard_normal((max(100, n // 20), a.dim)).astype(np.float32) / np.sqrt(a.dim)
        x = vectors(n, a.dim, rng, centres)
        q = vectors(a.queries, a.dim, rng, centres)
        truth = None
        for kind in a.kinds:
            if kind == "hnsw" and n > a.hnsw_max:
                print(f"{n:9d} {kind:6s} skipped (> --hnsw-max)")
                continue
            t0 = time.perf_counter()
            idx = cindex.build(kind, a.dim, train=x[rng.choice(n, size=min(n, 100_000), replace=False)] if kind == "ivfpq" else None)
            idx.add_with_ids(x, np.arange(n, dtype=np.int64))
            build = time.perf_counter() - t0
            lat, found = [], []
            for i in range(len(q)):
                t1 = time.perf_counter()
                _, ids = idx.search(q[i : i + 1], 10)
                lat.append(1000 * (time.perf_counter() - t1))
                found.append(ids[0])
            found = np.array(found)
            if kind == "flat":
                truth = found
            recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) if truth is not None else float("nan")
            # serialising copies the index: measure memory on sizes that leave room for the copy (it is linear in n)
            mb = f"{bytes_of(idx) / 1e6 * (1_000_000 / n):13.0f}" if n <= 200_000 else f"{'as 100k':>13s}"
            print(f"{n:9d} {kind:6s} {build:8.1f} {np.percentile(lat, 50):8.2f} {np.percentile(lat, 99):8.2f} "
                  f"{recall:9.3f} {mb}", flush=True)
            if kind != "flat":  # the catalogue re-ranks 100 candidates with exact vectors kept on disk (SQLite)
                lat, found = [], []
                for i in range(len(q)):
                    t1 = time.perf_counter()
                    _, ids = idx.search(q[i : i + 1], 100)
                    cand = ids[0][ids[0] >= 0]
                    found.append(cand[np.argsort(-(x[cand] @ q[i]))][:10])
                    lat.append(1000 * (time.perf_counter() - t1))
                recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
                print(f"{n:9d} {kind + '+rr':9s} {'':5s} {np.percentile(lat, 50):8.2f} {np.percentile(lat, 99):8.2f} "
                      f"{recall:9.3f} {'(+ vectors on disk)':>13s}", flush=True)
            del idx
        del x


if __name__ == "__main__":
    main()
