"""The catalogue on disk: one folder holding an SQLite database (tracks, their window embeddings, metadata) and a
FAISS index of track embeddings rebuilt or topped up from the database.

Crash safety: every enrolled track is one committed SQLite transaction (WAL, synchronous=FULL), so a kill -9 keeps
every track that was reported enrolled; the FAISS file is a cache, written atomically and checked against the
database on open. A track is identified by its content hash: the same audio is enrolled once per singer, whatever its
path, and a retry after a crash adds nothing twice. Every change bumps the `generation` counter in `meta`, so other
processes (service workers, a CLI beside a server) see that their search structures are stale.
"""
from __future__ import annotations

import hashlib
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
    n_windows INTEGER NOT NULL, emb BLOB NOT NULL, windows BLOB NOT NULL, starts BLOB NOT NULL, added REAL NOT NULL,
    sha TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'real'
);
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
"""
COLUMNS = {"sha": "TEXT NOT NULL DEFAULT ''", "kind": "TEXT NOT NULL DEFAULT 'real'",  # added after version 1
           "query_emb": "BLOB"}  # a two-view track's raw reading alone (`embed.two_view_track`), for calibration
INDEXES = """
CREATE INDEX IF NOT EXISTS tracks_singer ON tracks(singer);
CREATE INDEX IF NOT EXISTS tracks_path_singer ON tracks(path, singer);
CREATE INDEX IF NOT EXISTS tracks_sha_singer ON tracks(sha, singer);
"""
BUMP = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"


class CatalogueError(ValueError):
    """A catalogue database that cannot be used: the message names the file and how to rebuild it."""


def damaged(db: Path, why: str) -> CatalogueError:
    return CatalogueError(f"{db}: damaged catalogue database ({why}); rebuild it: move {db.parent} aside and enrol "
                          f"the tracks again from your table (`singerid enroll TABLE --catalogue {db.parent}`)")


def _truncation(db: Path) -> str | None:
    """A database file shorter than its header says (cut off by a copy or a full disk) → why, else None."""
    with open(db, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return None  # not a database at all: SQLite says so
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[92:96] == head[96:100]  # the in-header size is valid when written by SQLite >= 3.7.0
    size = db.stat().st_size
    if valid and pages and size < pages * page:
        return f"truncated: {size} bytes, its header says {pages * page}"
    return None


def file_sha(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes ('' when unreadable: the decoder then reports why)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def _connect(db: Path, attempts: int = 40) -> sqlite3.Connection:
    """Open (and set up) the database; several processes creating one catalogue at once wait for each other instead
    of failing with "database is locked" (switching to WAL takes an exclusive lock the busy timeout does not cover)."""
    for attempt in range(attempts):
        conn = sqlite3.connect(db, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            have = {r[1] for r in conn.execute("PRAGMA table_info(tracks)")}
            for name, decl in COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE tracks ADD COLUMN {name} {decl}")
            conn.executescript(INDEXES)
            conn.commit()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" not in str(e) and "busy" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (1 + attempt % 5))
    raise AssertionError("unreachable")


def _connect_readonly(db: Path) -> sqlite3.Connection:
    """Open for reading only: nothing in the folder is written (a read-only catalogue, concurrent readers)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def open_db(db: Path, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Connect and check that the file is a usable singerid catalogue (CatalogueError naming it otherwise)."""
    if db.exists() and (why := _truncation(db)):
        raise damaged(db, why)
    try:
        conn = _connect_readonly(db) if readonly else _connect(db)
        conn.execute("SELECT COUNT(*) FROM tracks").fetchone()  # reads the table's pages: a cut-off file fails here
        made = conn.execute("SELECT 1 FROM meta WHERE key = 'backend'").fetchone()
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "unable to open" in str(e)):
            raise
        raise damaged(db, str(e)) from None
    if not made and not create:
        conn.close()
        raise damaged(db, "no catalogue metadata: empty or not made by singerid")
    return conn


class Store:
    def __init__(self, folder: str | os.PathLike, create: bool = False, readonly: bool = False):
        """`readonly`: nothing is written to the folder; `set_meta` keeps its values in memory for this handle
        (a calibration computed for a catalogue changed since its last one, the resolved separator)."""
        self.folder = Path(folder)
        db = self.folder / "catalogue.sqlite"
        if not db.exists() and not create:
            raise FileNotFoundError(f"{self.folder}: no singerid catalogue (create one with `singerid enroll`)")
        if not readonly:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.readonly = readonly
        self._overlay: dict = {}
        self.db = open_db(db, create, readonly)

    # metadata -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        if key in self._overlay:
            return self._overlay[key]
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, **kv) -> None:
        if self.readonly:
            self._overlay.update(json.loads(json.dumps(kv)))
            return
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in kv.items()])

    def generation(self) -> int:
        """Changes so far (tracks added or removed): equal numbers mean the same catalogue content."""
        return int(self.get_meta("generation", 0))

    # tracks -------------------------------------------------------------------------------------------------
    def add_track(self, path: str, singer: str, song: str, starts: np.ndarray, windows: np.ndarray, sha: str = "",
                  kind: str = "real", track: np.ndarray | None = None,
                  query_track: np.ndarray | None = None) -> tuple[int, bool]:
        """Commit one track (its windows [N, D] L2-normalised, and its track-level embedding [D], by default the
        windows' mean; with two-view enrolment also `query_track` [D], the reading a query of it would get) in one
        transaction → (id, added). The same content (sha) already enrolled for this singer is not added again: (its
        id, False)."""
        emb = windows.mean(axis=0) if track is None else track
        emb = (emb / max(float(np.linalg.norm(emb)), 1e-12)).astype(np.float32)
        query = None if query_track is None else np.asarray(query_track, np.float32).tobytes()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")  # the duplicate check and the insert as one step across processes
            if sha and (row := self.db.execute("SELECT id FROM tracks WHERE sha = ? AND singer = ?",
                                               (sha, singer)).fetchone()):
                return int(row[0]), False
            cur = self.db.execute(
                "INSERT INTO tracks(path, singer, song, n_windows, emb, windows, starts, added, sha, kind, query_emb) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (path, singer, song, len(windows), emb.tobytes(), windows.astype(np.float16).tobytes(),
                 np.asarray(starts, np.float32).tobytes(), time.time(), sha, kind, query))
            self.db.execute(BUMP)
        return int(cur.lastrowid), True

    def has_track(self, path: str, singer: str, sha: str = "") -> bool:
        """Is this path (or, given a hash, this content) enrolled for this singer?"""
        q = "SELECT 1 FROM tracks WHERE singer = ? AND (path = ? OR (? != '' AND sha = ?))"
        return self.db.execute(q, (singer, path, sha, sha)).fetchone() is not None

    def has_file(self, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM tracks WHERE path = ?", (path,)).fetchone() is not None

    def paths_of(self, singer: str) -> list[str]:
        return [p for (p,) in self.db.execute("SELECT DISTINCT path FROM tracks WHERE singer = ?", (singer,))]

    def remove_singer(self, singer: str) -> int:
        with self.db:
            n = self.db.execute("DELETE FROM tracks WHERE singer = ?", (singer,)).rowcount
            if n:
                self.db.execute(BUMP)
        return n

    def singers(self) -> list[tuple[str, int]]:
        return [(s, n) for s, n in self.db.execute("SELECT singer, COUNT(*) FROM tracks GROUP BY singer ORDER BY singer")]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])

    def track_embeddings(self, after_id: int = 0, kind: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids [M], track embeddings [M, D], singers) of tracks with id > after_id (of one kind: real|cloned)."""
        dim = int(self.get_meta("dim"))
        rows = self.db.execute("SELECT id, emb, singer FROM tracks WHERE id > ? AND (? IS NULL OR kind = ?) ORDER BY id",
                               (after_id, kind, kind)).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        emb = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim) if rows else np.zeros((0, dim), np.float32)
        return ids, emb, [r[2] for r in rows]

    def track_vectors(self, kind: str = "real") -> list[tuple[int, str, str, np.ndarray]]:
        """[(id, singer, path, track embedding [1, D])] of one kind of track: what identification scores, for
        calibration (real voices only)."""
        dim = int(self.get_meta("dim"))
        q = "SELECT id, singer, path, emb FROM tracks WHERE kind = ? ORDER BY id"
        return [(i, s, p, np.frombuffer(e, np.float32).reshape(1, dim)) for i, s, p, e in self.db.execute(q, (kind,))]

    def query_vectors(self, kind: str = "real") -> dict[int, np.ndarray]:
        """id → [1, D] the raw reading of each two-view track (none for tracks enrolled with one view)."""
        dim = int(self.get_meta("dim"))
        q = "SELECT id, query_emb FROM tracks WHERE kind = ? AND query_emb IS NOT NULL"
        return {i: np.frombuffer(e, np.float32).reshape(1, dim) for i, e in self.db.execute(q, (kind,))}

    def embeddings_of(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Exact track embeddings by id (for re-ranking approximate search results)."""
        if not ids:
            return {}
        q = ",".join("?" * len(ids))
        return {i: np.frombuffer(e, np.float32) for i, e in self.db.execute(f"SELECT id, emb FROM tracks WHERE id IN ({q})", ids)}

    def track_info(self, ids: list[int]) -> dict[int, dict]:
        """id → {"track_id" (opaque), "singer", "song", "kind"}: what may be shown of an enrolled track (never its path)."""
        if not ids:
            return {}
        q = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id, singer, song, kind FROM tracks WHERE id IN ({q})", ids)
        return {i: {"track_id": f"t{i}", "singer": s, "song": Path(g).name, "kind": k} for i, s, g, k in rows}

    def close(self) -> None:
        self.db.close()
