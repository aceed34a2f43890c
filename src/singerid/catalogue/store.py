"""The catalogue on disk: one folder holding an SQLite database (tracks, their window embeddings, metadata) and a
FAISS index of track embeddings rebuilt or topped up from the database.

Crash safety: every enrolled track is one committed SQLite transaction (WAL, synchronous=FULL), so a kill -9 keeps
every track that was reported enrolled; the FAISS file is a cache, written atomically and checked against the
database on open.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL, singer TEXT NOT NULL, song TEXT NOT NULL,
    n_windows INTEGER NOT NULL, emb BLOB NOT NULL, windows BLOB NOT NULL, starts BLOB NOT NULL, added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_singer ON tracks(singer);
CREATE INDEX IF NOT EXISTS tracks_path_singer ON tracks(path, singer);
"""


class Store:
    def __init__(self, folder: str | os.PathLike, create: bool = False):
        self.folder = Path(folder)
        db = self.folder / "catalogue.sqlite"
        if not db.exists() and not create:
            raise FileNotFoundError(f"{self.folder}: no singerid catalogue (create one with `singerid enroll`)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(db, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.db.commit()

    # metadata -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, **kv) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in kv.items()])

    # tracks -------------------------------------------------------------------------------------------------
    def add_track(self, path: str, singer: str, song: str, starts: np.ndarray, windows: np.ndarray) -> int:
        """Commit one track (its windows [N, D] L2-normalised); returns its id once durable."""
        emb = windows.mean(axis=0)
        emb = (emb / max(float(np.linalg.norm(emb)), 1e-12)).astype(np.float32)
        with self.db:
            cur = self.db.execute(
                "INSERT INTO tracks(path, singer, song, n_windows, emb, windows, starts, added) VALUES (?,?,?,?,?,?,?,?)",
                (path, singer, song, len(windows), emb.tobytes(), windows.astype(np.float16).tobytes(),
                 np.asarray(starts, np.float32).tobytes(), time.time()))
        return int(cur.lastrowid)

    def has_track(self, path: str, singer: str) -> bool:
        return self.db.execute("SELECT 1 FROM tracks WHERE path = ? AND singer = ?", (path, singer)).fetchone() is not None

    def remove_singer(self, singer: str) -> int:
        with self.db:
            n = self.db.execute("DELETE FROM tracks WHERE singer = ?", (singer,)).rowcount
        return n

    def singers(self) -> list[tuple[str, int]]:
        return [(s, n) for s, n in self.db.execute("SELECT singer, COUNT(*) FROM tracks GROUP BY singer ORDER BY singer")]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])

    def track_embeddings(self, after_id: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids [M], track embeddings [M, D], singers) of tracks with id > after_id."""
        dim = int(self.get_meta("dim"))
        rows = self.db.execute("SELECT id, emb, singer FROM tracks WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        emb = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim) if rows else np.zeros((0, dim), np.float32)
        return ids, emb, [r[2] for r in rows]

    def windows_of_all(self) -> list[tuple[int, str, str, np.ndarray]]:
        """[(id, singer, path, windows [N, D] float32)] for calibration."""
        dim = int(self.get_meta("dim"))
        return [(i, s, p, np.frombuffer(w, np.float16).reshape(n, dim).astype(np.float32))
                for i, s, p, n, w in self.db.execute("SELECT id, singer, path, n_windows, windows FROM tracks ORDER BY id")]

    def embeddings_of(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Exact track embeddings by id (for re-ranking approximate search results)."""
        if not ids:
            return {}
        q = ",".join("?" * len(ids))
        return {i: np.frombuffer(e, np.float32) for i, e in self.db.execute(f"SELECT id, emb FROM tracks WHERE id IN ({q})", ids)}

    def track_info(self, ids: list[int]) -> dict[int, tuple[str, str]]:
        if not ids:
            return {}
        q = ",".join("?" * len(ids))
        return {i: (p, s) for i, p, s in self.db.execute(f"SELECT id, path, singer FROM tracks WHERE id IN ({q})", ids)}

    def close(self) -> None:
        self.db.close()
