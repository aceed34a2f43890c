"""`Catalogue`: enrol singers' tracks, identify a track's singer with evidence and an honest "unknown".

    cat = Catalogue.create("my-cat", backend="voice")          # or Catalogue.open("my-cat")
    cat.enroll(load_tracks("tracks.csv"))
    result = cat.identify("upload.mp3")                         # dict: decision, candidates, windows, caveat
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import CAVEAT
from ..audio import load_audio
from ..embed import iter_track_embeddings, wave_windows
from . import index as faiss_index
from .calibrate import calibrate, sigmoid
from .store import Store

log = logging.getLogger(__name__)


class Catalogue:
    def __init__(self, store: Store, device: str = "cpu"):
        self.store = store
        self.device = device
        self._embedder = None
        self._separator = None
        self._index = None
        self._centroids: tuple[list[str], np.ndarray] | None = None

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(cls, folder: str | os.PathLike, backend: str = "voice", checkpoint: str | None = None,
               separate: str = "auto", index_kind: str = "flat", device: str = "cpu") -> "Catalogue":
        store = Store(folder, create=True)
        if store.get_meta("backend") is None:
            store.set_meta(backend=backend, checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
                           separate=separate, index_kind=index_kind, version=1)
        cat = cls(store, device)
        store.set_meta(dim=cat.embedder.dim)
        return cat

    @classmethod
    def open(cls, folder: str | os.PathLike, device: str = "cpu") -> "Catalogue":
        return cls(Store(folder), device)

    @property
    def folder(self) -> Path:
        return self.store.folder

    @property
    def embedder(self):
        if self._embedder is None:
            from ..backends import load_embedder

            self._embedder = load_embedder(self.store.get_meta("backend"), self.store.get_meta("checkpoint"), self.device)
        return self._embedder

    @property
    def separator(self):
        if self._separator is None:
            from ..separation import load_separator, resolve_name
            from ..weights import home

            name = resolve_name(self.store.get_meta("separate", "auto"))
            self.store.set_meta(separate=name)  # fixed once: enrolled and query windows must match
            if name == "none":
                return None
            self._separator = load_separator(name, self.device, home() / "separated")
        return self._separator

    # ------------------------------------------------------------------ enrolment
    def enroll(self, tracks: pd.DataFrame, workers: int = 2, progress: bool = True, calibrate_after: bool = True,
               on_track=None) -> dict:
        """Embed and commit each track (already enrolled path+singer pairs are skipped). Rows marked stem=vocals are
        not separated. `on_track(path, singer)` is called once a track is durable. → {"enrolled", "skipped", "errors"}"""
        todo = tracks[[not self.store.has_track(p, s) for p, s in zip(tracks["path"], tracks["singer"])]]
        out = {"enrolled": 0, "skipped": len(tracks) - len(todo), "errors": []}
        vocal_rows = todo["stem"] == "vocals" if "stem" in todo else pd.Series(False, index=todo.index)
        for is_vocal in (True, False):
            part = todo[vocal_rows == is_vocal]
            if part.empty:
                continue
            sep = None if is_vocal else self.separator
            for te in iter_track_embeddings(self.embedder, list(part["path"]), None, workers, progress, separator=sep):
                row = part.iloc[te.index]
                if te.error:
                    out["errors"].append(te.error)
                    continue
                self.store.add_track(row["path"], row["singer"], str(row.get("song", row["path"])), np.asarray(te.starts), te.embeddings)
                out["enrolled"] += 1
                if on_track is not None:
                    on_track(row["path"], row["singer"])
        self._centroids = None
        self._sync_index()
        if calibrate_after:
            self.calibrate()
        return out

    def enroll_embedded(self, windows: pd.DataFrame, calibrate_after: bool = True) -> dict:
        """Commit tracks embedded elsewhere (e.g. `ray_embed` shards: path, singer, song, start, embedding, error)."""
        out = {"enrolled": 0, "skipped": 0, "errors": []}
        for (path, singer), g in windows.groupby(["path", "singer"], sort=False):
            if g["error"].astype(bool).any() if "error" in g else False:
                out["errors"].append(g["error"].iloc[0])
            elif self.store.has_track(path, singer):
                out["skipped"] += 1
            else:
                emb = np.stack(g["embedding"].to_list()).astype(np.float32)
                self.store.add_track(path, singer, str(g["song"].iloc[0]), g["start"].to_numpy(), emb)
                out["enrolled"] += 1
        self._centroids = None
        self._sync_index()
        if calibrate_after:
            self.calibrate()
        return out

    def remove_singer(self, singer: str) -> int:
        n = self.store.remove_singer(singer)
        if n:
            self._centroids = None
            self._sync_index(rebuild=True)
            self.calibrate()
        return n

    def singers(self) -> list[dict]:
        return [{"singer": s, "tracks": n} for s, n in self.store.singers()]

    def calibrate(self, far: float = 0.05) -> dict:
        cal = calibrate(self.store.windows_of_all(), far)
        self.store.set_meta(calibration=cal)
        return cal

    # ------------------------------------------------------------------ search structures
    def centroids(self) -> tuple[list[str], np.ndarray]:
        if self._centroids is None:
            _, emb, singers = self.store.track_embeddings()
            names = sorted(set(singers))
            idx = {s: i for i, s in enumerate(names)}
            c = np.zeros((len(names), emb.shape[1]), np.float64)
            np.add.at(c, [idx[s] for s in singers], emb)
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
            self._centroids = (names, c.astype(np.float32))
        return self._centroids

    def _sync_index(self, rebuild: bool = False) -> None:
        """Load the FAISS file, add tracks enrolled since it was written, rebuild after removals."""
        kind = self.store.get_meta("index_kind", "flat")
        loaded = None if rebuild else faiss_index.load(self.folder)
        if loaded is not None and loaded[1].get("kind") == kind:
            index, meta = loaded
            if index.ntotal != meta["ntotal"]:
                index = None
        else:
            index, meta = None, {"max_id": 0}
        if index is None:
            meta = {"max_id": 0}
        ids, emb, _ = self.store.track_embeddings(meta["max_id"])  # read once: all tracks when (re)building
        if index is None:
            index = faiss_index.build(kind, int(self.store.get_meta("dim")), train=emb if kind == "ivfpq" else None)
        if len(ids):
            index.add_with_ids(emb, ids)
        if index.ntotal != self.store.count():  # removals since the file was written
            return self._sync_index(rebuild=True) if not rebuild else None
        faiss_index.save(index, self.folder, int(ids.max()) if len(ids) else meta["max_id"], kind)
        self._index = index

    @property
    def index(self):
        if self._index is None:
            self._sync_index()
        return self._index

    # ------------------------------------------------------------------ identification
    def identify(self, path: str | os.PathLike, top: int = 5, neighbours: int = 5) -> dict:
        """One file → decision, ranked candidates with calibrated confidence, per-window evidence, nearest tracks."""
        return self.identify_wave(load_audio(path), top, neighbours, str(path))

    def identify_wave(self, wave: np.ndarray, top: int = 5, neighbours: int = 5, path: str = "") -> dict:
        names, cents = self.centroids()
        if not names:
            raise ValueError(f"{self.folder}: the catalogue is empty: enrol singers first")
        starts, windows = wave_windows(wave, self.embedder.window_seconds, None, self.separator)
        emb = self.embedder.embed_windows(windows)  # [N, D]
        per_window = emb @ cents.T  # [N, S]
        score = per_window.mean(axis=0)  # [S]
        votes = np.bincount(per_window.argmax(axis=1), minlength=len(names))
        order = np.lexsort((-score, -votes))[:top]
        cal = self.store.get_meta("calibration") or {}
        thr = cal.get("threshold")
        a, b = cal.get("logistic") or (None, None)
        conf = (lambda s: round(float(sigmoid(a * s + b)), 4)) if a is not None else (lambda s: None)
        candidates = [{"singer": names[i], "score": round(float(score[i]), 4), "votes": int(votes[i]),
                       "confidence": conf(float(score[i]))} for i in order]
        best = candidates[0]
        decision = best["singer"] if thr is None or best["score"] >= thr else "unknown"
        track_emb = emb.mean(axis=0, keepdims=True)
        track_emb /= max(float(np.linalg.norm(track_emb)), 1e-12)
        sims, ids = self.nearest_tracks(track_emb[0], neighbours)
        info = self.store.track_info([int(i) for i in ids if i >= 0])
        return {
            "path": path, "decision": decision, "threshold": thr, "candidates": candidates,
            "windows": [{"start": float(s), "singer": names[int(r.argmax())], "score": round(float(r.max()), 4)}
                        for s, r in zip(starts, per_window)],
            "nearest_tracks": [{"path": info[int(i)][0], "singer": info[int(i)][1], "score": round(float(v), 4)}
                               for v, i in zip(sims, ids) if int(i) in info],
            "caveat": CAVEAT,
        }

    def nearest_tracks(self, query: np.ndarray, k: int, rerank: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """[D] → (scores [k], ids [k]) of the closest enrolled tracks. Approximate indexes fetch k × rerank candidates
        and re-rank them with the exact embeddings kept in the database."""
        k = min(k, self.index.ntotal)
        if k == 0:
            return np.zeros(0), np.zeros(0, np.int64)
        exact = self.store.get_meta("index_kind", "flat") == "flat"
        sims, ids = faiss_index.search(self.index, query[None], k if exact else min(self.index.ntotal, k * rerank))
        if exact:
            return sims[0], ids[0]
        vecs = self.store.embeddings_of([int(i) for i in ids[0] if i >= 0])
        cand = np.array(list(vecs))
        scores = np.stack([vecs[int(i)] for i in cand]) @ query
        order = np.argsort(-scores)[:k]
        return scores[order], cand[order]

    def close(self) -> None:
        self.store.close()
