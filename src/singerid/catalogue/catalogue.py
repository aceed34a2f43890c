"""`Catalogue`: enrol singers' tracks, identify a track's singer with evidence and an honest "unknown".

    cat = Catalogue.create("my-cat", backend="voice")          # or Catalogue.open("my-cat")
    cat.enroll(load_tracks("tracks.csv"))
    result = cat.identify("upload.mp3")                         # dict: decision, tier, candidates, windows, caveat

Tracks marked `kind=cloned` are known imitations: kept as evidence ("near a known imitation of X"), never part of a
singer's real voice (centroids, calibration).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import CAVEAT
from ..progress import log_progress
from ..audio import load_audio
from ..cpu import ensure as ensure_cpu_policy
from ..data.manifest import readable_rows
from ..embed import iter_track_embeddings
from ..synthetic import NOT_INSTALLED, installed_detector
from ..voiced import track_audio
from . import index as faiss_index
from ..models.selfnorm import DEFAULT_SCORE_NORM, EnrolmentNorm, SelfNormConfig
from .calibrate import BEST, calibrate, confidence, decide, decision_score, track_score
from .store import Store, file_sha

log = logging.getLogger(__name__)


class Catalogue:
    def __init__(self, store: Store, device: str = "cpu"):
        self.store = store
        self.device = device
        self._embedder = None
        self._separator = None
        self._second_view = None
        self._index = None
        self._centroids: tuple[list[str], EnrolmentNorm] | None = None  # real singers and their statistics
        self._clones: tuple[list[str], np.ndarray] | None = None
        self._cohort: dict[str, tuple] = {}  # kind → (centroids, backend, AS-norm's centroid side) computed from them
        self._generation = store.generation()  # the content the search structures above were built from
        try:  # the synthetic-voice detector every answer carries (None: a note says why)
            self.detector, self.detector_note = installed_detector(), NOT_INSTALLED
        except (OSError, ValueError) as e:  # a damaged install must not stop identification
            log.warning("synthetic-voice detector not loaded: %s", e)
            self.detector, self.detector_note = None, f"synthetic-voice detector not loaded: {e}"

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(cls, folder: str | os.PathLike, backend: str = "voice", checkpoint: str | None = None,
               separate: str = "auto", index_kind: str = "flat", device: str = "cpu",
               enrol_views: str = "auto", score_norm: str = DEFAULT_SCORE_NORM) -> "Catalogue":
        """Create (or reopen) a catalogue. `enrol_views` (`embed.ENROL_VIEWS`) is fixed at creation: how a distilled
        student enrols each track (raw only, or raw and separated, averaged); reopening with another is refused.
        `score_norm`: "enrolment" (scores normalised by the catalogue's own statistics, `models.selfnorm`) or
        "none" (cosine, or the checkpoint's backend cohort)."""
        SelfNormConfig.named(score_norm)  # refuses an unknown name
        from ..embed import second_view_name

        store = Store(folder, create=True)
        new = store.get_meta("backend") is None
        if new:
            store.set_meta(backend=backend, checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
                           separate=separate, index_kind=index_kind, version=1, score_norm=score_norm)
        cat = cls(store, device)
        name = second_view_name(cat.embedder, enrol_views, separate) or ""
        if new:
            store.set_meta(enrol_also_separated=name)
        elif enrol_views != "auto" and name != (store.get_meta("enrol_also_separated") or ""):
            had = store.get_meta("enrol_also_separated")
            views = f"each track raw and separated by {had}" if had else "one view of each track"
            raise ValueError(f"{folder} enrols {views}; its tracks must all be enrolled the same way "
                             "(leave --enrol-views out, or enrol into a new catalogue)")
        store.set_meta(dim=cat.embedder.dim)
        if store.get_meta("model") is None:
            store.set_meta(model=_model_meta(cat.embedder))
        return cat

    @classmethod
    def open(cls, folder: str | os.PathLike, device: str = "cpu", backend: str | None = None,
             checkpoint: str | None = None, readonly: bool = False) -> "Catalogue":
        """Open a catalogue; one changed since its last calibration (e.g. an enrolment killed before the end) is
        calibrated now, so no answer goes out without an "unknown". With `backend` or `checkpoint`, queries are
        embedded by that model instead of the enrolling one: it must write into the same embedding space (e.g. a
        distilled student and its teacher), else ValueError. `readonly` (identify, verify): nothing in the folder is
        written; a stale calibration is computed in memory only."""
        cat = cls(Store(folder, readonly=readonly), device)
        if backend or checkpoint:
            cat.use_model(backend, checkpoint)
        cat.ensure_calibrated(stale=True)
        return cat

    def model(self) -> dict:
        """Which model enrolled the catalogue: {name, space, input} (computed for catalogues made before it was
        recorded)."""
        return self.store.get_meta("model") or _model_meta(self._enrolling_embedder())

    def _enrolling_embedder(self):
        from ..embed import load_embedder

        return load_embedder(self.store.get_meta("backend"), self.store.get_meta("checkpoint"), self.device)

    def use_model(self, backend: str | None = None, checkpoint: str | None = None) -> None:
        """Embed queries with another model of the catalogue's embedding space (refused otherwise)."""
        from ..embed import load_embedder

        emb = load_embedder(backend, checkpoint, self.device)
        mine = self.model()
        if emb.space != mine["space"] or emb.dim != int(self.store.get_meta("dim", emb.dim)):
            raise ValueError(f"{emb.name} does not share the embedding space of the model that enrolled this catalogue "
                             f"({mine['name']}): query with that model, or enrol the singers again with this one")
        self._embedder, self._separator = emb, None

    def ensure_calibrated(self, stale: bool = False) -> None:
        """Calibrate when there is no calibration (or, with `stale`, when tracks, the score normalisation or the
        decision rule changed since the last one)."""
        cal = self.store.get_meta("calibration")
        if self.store.count() and (cal is None or stale and (cal.get("generation") != self.store.generation()
                                                             or cal.get("score_norm") != self.score_norm_name
                                                             or "decision_score" not in cal)):  # older rule
            log.info("%s: calibrating (tracks or the decision rule changed since the last calibration)", self.folder)
            self.calibrate()

    def refresh(self) -> bool:
        """Drop search structures built before another process (or handle) changed the tracks → True if it did."""
        gen = self.store.generation()
        if gen == self._generation:
            return False
        self._centroids = self._clones = self._index = None
        self._generation = gen
        self.ensure_calibrated()
        return True

    @property
    def score_norm_name(self) -> str:
        return self.store.get_meta("score_norm") or "none"  # catalogues made before it scored by cosine

    @property
    def score_norm(self) -> SelfNormConfig | None:
        return SelfNormConfig.named(self.score_norm_name)

    @property
    def folder(self) -> Path:
        return self.store.folder

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self._enrolling_embedder()
        return self._embedder

    @property
    def second_view(self):
        """The separator through which a distilled student's enrolment also reads each track (`embed.two_view_track`),
        or None; identification reads the query raw either way."""
        name = self.store.get_meta("enrol_also_separated")
        if not name or not getattr(self.embedder, "reads_mixtures", False):
            return None
        if self._second_view is None:
            from ..separation import load_separator

            self._second_view = load_separator(name, self.device)
        return self._second_view

    @property
    def separator(self):
        if getattr(self.embedder, "reads_mixtures", False):
            return None  # a distilled student reads the raw mixture
        if self._separator is None:
            from ..separation import load_separator, resolve_name

            name = resolve_name(self.store.get_meta("separate", "auto"))
            if name != self.store.get_meta("separate"):
                self.store.set_meta(separate=name)  # fixed once: enrolled and query windows must match
            if name == "none":
                return None
            self._separator = load_separator(name, self.device)  # uncached: a query's stems are never kept on disk
        return self._separator

    # ------------------------------------------------------------------ enrolment
    def enroll(self, tracks: pd.DataFrame, workers: int = 2, progress: bool = True, calibrate_after: bool = True,
               on_track=None) -> dict:
        """Embed and commit each track. A track is enrolled once per singer and content (a repeated row, a copy under
        another path or a retry after a crash adds nothing). Rows marked stem=vocals are not separated; rows marked
        kind=cloned are known imitations. `on_track(path, singer)` is called once a track is durable.
        Every path passes `readable_rows` (the file checks) before it is hashed or decoded.
        → {"enrolled", "skipped", "errors", "failed_rows" (labels of the rows not enrolled)}"""
        tracks, refused = readable_rows(tracks)
        todo = self._new_tracks(tracks)
        out = {"enrolled": 0, "skipped": len(tracks) - len(todo), "errors": [e for _, e in refused],
               "failed_rows": [i for i, _ in refused]}
        vocal_rows = todo["stem"] == "vocals" if "stem" in todo else pd.Series(False, index=todo.index)
        for is_vocal in (True, False):
            part = todo[vocal_rows == is_vocal]
            if part.empty:
                continue
            sep, also = (None, None) if is_vocal else (self.separator, self.second_view)
            embedded = iter_track_embeddings(self.embedder, list(part["path"]), None, workers, progress, separator=sep,
                                             vad=None if is_vocal else "auto", also_separated=also)  # a stem: by energy
            for te in log_progress(embedded, len(part), "enrol", enabled=progress):
                row = part.iloc[te.index]
                if te.error:
                    out["errors"].append(te.error)
                    out["failed_rows"].append(row.name)
                    continue
                _, added = self.store.add_track(row["path"], row["singer"], str(row.get("song", row["path"])),
                                                np.asarray(te.starts), te.embeddings, row["sha"], _kind(row), te.track,
                                                te.query_track)
                out["enrolled" if added else "skipped"] += 1
                if on_track is not None:
                    on_track(row["path"], row["singer"])
        self._changed()
        if calibrate_after:
            self.calibrate()
        return out

    def _new_tracks(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """The rows not yet enrolled, each (path, singer) and each (content, singer) once, with a `sha` column."""
        tracks = tracks.drop_duplicates(["path", "singer"])
        tracks = tracks.loc[np.array([not self.store.has_track(p, s) for p, s in zip(tracks["path"], tracks["singer"])], bool)]
        tracks = tracks.assign(sha=[file_sha(p) for p in tracks["path"]])
        new = np.array([not self.store.has_track("", s, h) for h, s in zip(tracks["sha"], tracks["singer"])], bool)
        tracks = tracks.loc[new]
        return tracks.loc[(tracks["sha"] == "") | ~tracks.duplicated(["sha", "singer"])]

    def _changed(self) -> None:
        self._centroids = self._clones = None
        self._generation = self.store.generation()
        self._sync_index()

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
                track = np.asarray(g["track"].iloc[0], np.float32) if "track" in g else None
                _, added = self.store.add_track(path, singer, str(g["song"].iloc[0]), g["start"].to_numpy(), emb,
                                                file_sha(path), _kind(g.iloc[0]), track)
                out["enrolled" if added else "skipped"] += 1
        self._changed()
        if calibrate_after:
            self.calibrate()
        return out

    def remove_singer(self, singer: str) -> int:
        """Remove a singer's tracks, and the audio the service kept for them (`<catalogue>/uploads/`) that no other
        track uses. → tracks removed"""
        paths = self.store.paths_of(singer)
        n = self.store.remove_singer(singer)
        self._drop_kept_uploads(paths)
        if n:
            self._centroids = self._clones = None
            self._generation = self.store.generation()
            self._sync_index(rebuild=True)
            self.calibrate()
        return n

    def _drop_kept_uploads(self, paths: list[str]) -> None:
        kept = (self.folder / "uploads").resolve()
        for p in map(Path, paths):
            if p.parent.resolve() == kept and not self.store.has_file(str(p)):
                p.unlink(missing_ok=True)
                log.info("removed the uploaded audio %s", p.name)

    def singers(self) -> list[dict]:
        return [{"singer": s, "tracks": n} for s, n in self.store.singers()]

    def calibrate(self, far: float = 0.05) -> dict:
        """Decision tiers from the real tracks (leave-one-out); `far`: the verification threshold's target rate."""
        gen = self.store.generation()
        cal = {**calibrate(self.store.track_vectors("real"), far, backend=self.embedder.backend,
                           queries=self.store.query_vectors("real"), score_norm=self.score_norm), "generation": gen,
               "score_norm": self.score_norm_name}
        self.store.set_meta(calibration=cal)
        return cal

    # ------------------------------------------------------------------ search structures
    def enrolment(self) -> tuple[list[str], EnrolmentNorm]:
        """Real singers (names) and the statistics their tracks are scored with (`models.selfnorm`); rebuilt from
        the stored tracks when they changed, so they never drift from what is enrolled."""
        self.refresh()
        if self._centroids is None:
            _, emb, singers = self.store.track_embeddings(kind="real")
            names = sorted(set(singers))
            idx = {s: i for i, s in enumerate(names)}
            self._centroids = names, EnrolmentNorm.fit(emb, np.array([idx[s] for s in singers], int), len(names),
                                                       self.score_norm)
        return self._centroids

    def centroids(self) -> tuple[list[str], np.ndarray]:
        """Singers' real-voice centroids (names, [S, D]) as scored (centred on the catalogue's mean when its scores
        are normalised)."""
        names, norm = self.enrolment()
        return names, norm.centroids

    def clone_centroids(self) -> tuple[list[str], np.ndarray]:
        """Centroids of the known imitations of each singer (kind=cloned tracks), centred as the real ones."""
        if self._clones is None:
            _, emb, singers = self.store.track_embeddings(kind="cloned")
            names = sorted(set(singers))
            idx = {s: i for i, s in enumerate(names)}
            c = np.zeros((len(names), emb.shape[1]), np.float64)
            np.add.at(c, [idx[s] for s in singers], self.enrolment()[1].centre(emb))
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
            self._clones = names, c.astype(np.float32)
        return self._clones

    def _sync_index(self, rebuild: bool = False, save: bool = True) -> None:
        """Load the FAISS file, add tracks enrolled since it was written, rebuild after removals; `save` the result
        (enrolment and removal do; a search keeps what it topped up in memory: identification writes nothing)."""
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
            return self._sync_index(rebuild=True, save=save) if not rebuild else None
        if save and not self.store.readonly:
            faiss_index.save(index, self.folder, int(ids.max()) if len(ids) else meta["max_id"], kind)
        self._index = index

    @property
    def index(self):
        self.refresh()
        if self._index is None:
            self._sync_index(save=False)
        return self._index

    # ------------------------------------------------------------------ identification
    def identify(self, path: str | os.PathLike, top: int = 5, neighbours: int = 5) -> dict:
        """One file → decision, ranked candidates with calibrated confidence, per-window evidence, nearest tracks."""
        return self.identify_wave(load_audio(path), top, neighbours, str(path))

    def identify_wave(self, wave: np.ndarray, top: int = 5, neighbours: int = 5, path: str = "") -> dict:
        ensure_cpu_policy()
        names, norm = self.enrolment()
        if not names:
            raise ValueError(f"{self.folder}: the catalogue is empty: enrol singers first")
        audio = track_audio(wave, self.embedder.window_seconds, None, self.separator)
        starts, emb = audio.starts, self.embedder.embed_windows(audio.windows)  # [N, D] per-window evidence
        track_emb = self.embedder.embed_track(audio.voiced)[None]  # [1, D] what is scored
        per_window = norm.centre(emb) @ norm.centroids.T  # [N, S]
        score = self._track_score(track_emb, "real", (names, norm.centroids))  # [S] against each singer's centroid
        votes = np.bincount(per_window.argmax(axis=1), minlength=len(names))
        clones = self.clone_centroids()
        clone_names = clones[0]
        clone_score = self._track_score(track_emb, "cloned", clones) if clone_names else np.zeros(0)  # [C]
        # ---- decision: from `score` alone (whatever computed it), calibrated tiers, one ordering ----
        cal = self.store.get_meta("calibration") or {}
        out = {"path": path, **self._decision(names, score, votes, top, cal),
               "score_norm": f"enrolment (k={norm.k})" if norm.active else "none", "score_norm_note": norm.note}
        out["imitation"] = _imitation(clone_names, clone_score, score, cal)
        if self.detector is not None:  # on the vocal identification read: the separated one of a mixture
            out["synthetic"] = self.detector.score_windows(audio.starts, audio.windows,
                                                           "separated vocal" if audio.separated else "as given")
        else:
            out["synthetic_note"] = self.detector_note
        sims, ids = self.nearest_tracks(track_emb[0], neighbours)
        info = self.store.track_info([int(i) for i in ids if i >= 0])
        return {
            **out,
            "windows": [{"start": float(s), "singer": names[int(r.argmax())], "score": round(float(r.max()), 4)}
                        for s, r in zip(starts, per_window)],
            "nearest_tracks": [{**info[int(i)], "score": round(float(v), 4)} for v, i in zip(sims, ids) if int(i) in info],
            "caveat": CAVEAT,
        }

    def _track_score(self, track_emb: np.ndarray, kind: str, centroids: tuple[list[str], np.ndarray]) -> np.ndarray:
        """[1, D] track → [S] scores against `centroids`: normalised by the catalogue's own statistics (a clone
        centroid with the cohort of the singers other than the one it imitates), else by the backend's AS-norm,
        whose centroid side (S × cohort products) is computed once per centroids and model, not per query."""
        names, norm = self.enrolment()
        if norm.active:
            if kind == "real":
                return norm.score(track_emb)[0]
            idx = {s: i for i, s in enumerate(names)}
            return norm.score(track_emb, centroids[1], np.array([idx.get(s, -1) for s in centroids[0]]))[0]
        backend = self.embedder.backend
        hit = self._cohort.get(kind)
        if hit is None or hit[0] is not centroids[1] or hit[1] is not backend:
            stats = backend.cohort_stats(centroids[1]) if backend is not None else None
            hit = self._cohort[kind] = (centroids[1], backend, stats)
        return track_score(track_emb, centroids[1], backend, hit[2])

    @staticmethod
    def _decision(names: list[str], score: np.ndarray, votes: np.ndarray, top: int, cal: dict) -> dict:
        """Per-singer scores [S] → decision (a singer or "unknown"), tier and its measured false-acceptance rate (on
        the decision score: the best score and its margin over the runner-up, `decision_score`), candidates ordered by
        score (votes are evidence); confidence P(the named singer is right) for the best only."""
        order = np.argsort(-score, kind="stable")[:top]
        value = decision_score(score, cal.get("decision_score", BEST))
        tier = decide(value, cal)
        candidates = [{"singer": names[i], "score": round(float(score[i]), 4), "votes": int(votes[i]),
                       "confidence": confidence(value, cal) if k == 0 else None} for k, i in enumerate(order)]
        named = tier["tier"] in ("match", "possible")
        return {"decision": names[order[0]] if named else "unknown", **tier, "decision_score": round(value, 4),
                "threshold": cal.get("threshold"),
                "calibration_note": None if cal.get("tiers") else cal.get("reason", "not calibrated"),
                "candidates": candidates}

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


def _model_meta(embedder) -> dict:
    return {"name": embedder.name, "space": getattr(embedder, "space", f"preset:{embedder.name}"),
            "input": "mixture" if getattr(embedder, "reads_mixtures", False) else "vocals"}


def _kind(row) -> str:
    kind = str(row.get("kind", "real") or "real")
    return "cloned" if kind == "cloned" else "real"


def _imitation(names: list[str], clone_score: np.ndarray, real_score: np.ndarray, cal: dict) -> dict | None:
    """A query at least as close to a known imitation of X as to any real voice, and close enough to be named at
    the loosest tier (when calibrated; the imitation as one more candidate beside the real singers) → {"singer": X,
    "score", "note": "near a known imitation of X"}."""
    if not len(names):
        return None
    i = int(np.argmax(clone_score))
    s = float(clone_score[i])
    thr = cal.get("threshold")
    value = decision_score(np.r_[real_score, s], cal.get("decision_score", BEST))
    if s < real_score.max() or (thr is not None and value < thr):
        return None
    return {"singer": names[i], "score": round(s, 4), "note": f"near a known imitation of {names[i]}"}
