"""Issue 32, hardening round two: the input checks for files and table rows, a read-only identify, damaged
catalogues. Each test failed before its fix. (The HTTP items are in test_service.py, beside the server fixture.)"""
from __future__ import annotations

import builtins
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from singerid.catalogue import Catalogue
from singerid.catalogue.store import Store
from singerid.cli import main

from conftest import tiny_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory, "hardening", 2, 7)


@pytest.fixture(scope="module")
def catalogue(world):
    folder = world["root"] / "cat"
    assert _enrol(world, world["root"] / "all.csv", folder) == 0
    return folder


def _enrol(world, csv, folder, *extra) -> int:
    return main(["enroll", str(csv), "--catalogue", str(folder), "--checkpoint", world["ckpt"], "--separate", "none",
                 "--workers", "0", *extra])


def _table(world, tmp_path, *bad_rows: dict, good: int = 2):
    rows = world["t"].iloc[:good].to_dict("records") + [{"stem": "vocals", "song": f"b{i}", **r}
                                                        for i, r in enumerate(bad_rows)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


# ---------------------------------------------------------------------------------- 1. devices, FIFOs: never read
def test_enrol_refuses_devices_fifos_and_links_to_them_without_reading(world, tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")
    os.symlink("/dev/zero", tmp_path / "zero.wav")
    bad = [{"path": p, "singer": "x"} for p in ("/dev/zero", "/dev/urandom", str(tmp_path / "zero.wav"),
                                                str(tmp_path / "fifo.wav"))]
    csv = _table(world, tmp_path, *bad)
    cmd = [sys.executable, "-m", "singerid.cli", "--threads", "1", "enroll", str(csv), "--catalogue",
           str(tmp_path / "cat"), "--checkpoint", world["ckpt"], "--separate", "none", "--workers", "0"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # before the fix: hashing /dev/zero forever
    assert time.perf_counter() - t0 < 100
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("not a regular file") == 4, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert Catalogue.open(tmp_path / "cat").store.count() == 2


# ---------------------------------------------------------------------------------- 2. no read permission
@pytest.fixture
def locked(monkeypatch, tmp_path):
    """A file this process may not open (we run as root: opening it raises PermissionError as it would for a user)."""
    path = tmp_path / "locked.wav"
    sf.write(path, (0.3 * np.sin(np.arange(16000 * 3) / 5)).astype(np.float32), 16000)
    real_open = builtins.open

    def guarded(file, *a, **k):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    return path


def test_unreadable_file_is_refused_in_one_line_by_identify_and_enrol(world, catalogue, locked, tmp_path, capfd):
    assert main(["identify", str(locked), "--catalogue", str(catalogue)]) == 2
    err = capfd.readouterr().err
    assert "locked.wav: cannot read file (Permission denied)" in err and "Traceback" not in err
    csv = _table(world, tmp_path, {"path": str(locked), "singer": "x"})
    assert _enrol(world, csv, tmp_path / "cat") == 2
    assert Catalogue.open(tmp_path / "cat").store.count() == 2  # the rows around it are enrolled


# ---------------------------------------------------------------------------------- 3. exit status of enrol
def test_enrol_exits_2_when_a_row_fails_and_0_with_skip_bad(world, tmp_path, capfd):
    (tmp_path / "bad.wav").write_text("not audio")
    csv = _table(world, tmp_path, {"path": str(tmp_path / "bad.wav"), "singer": "x"})
    assert _enrol(world, csv, tmp_path / "cat") == 2
    out, err = capfd.readouterr()
    assert "1 not enrolled (row 3;" in out and "--skip-bad" in err
    assert Catalogue.open(tmp_path / "cat").store.count() == 2  # the good rows stay
    assert _enrol(world, csv, tmp_path / "cat2", "--skip-bad") == 0


def test_a_table_with_no_readable_row_creates_no_catalogue(world, tmp_path, capfd):
    (tmp_path / "bad.wav").write_text("not audio")  # passes the file checks, fails to decode
    for rows, name in (([{"path": str(tmp_path / "bad.wav"), "singer": "x"}], "undecodable"),
                       ([{"path": str(tmp_path / "missing.wav"), "singer": "x"}], "missing")):
        csv = _table(world, tmp_path, *rows, good=0)
        assert _enrol(world, csv, tmp_path / name) == 2
        assert not (tmp_path / name).exists(), name
        assert "no catalogue created" in capfd.readouterr().err or name == "missing"


# ---------------------------------------------------------------------------------- 4. table cells
@pytest.mark.parametrize("column,value,says", [
    ("singer", "s" * 100_000, "row 3, column 'singer': singer must be 1-200 characters"),
    ("kind", "evil", "row 3, column 'kind': kind must be 'real' or 'cloned'"),
    ("vocal_segs", "[0, NaN]", "row 3, column 'vocal_segs': vocal_segs: start times must be finite"),
    ("vocal_segs", "inf", "row 3, column 'vocal_segs'"),
    ("vocal_segs", "-5", "row 3, column 'vocal_segs'"),
    ("vocal_segs", "[0, 6.5", "row 3, column 'vocal_segs': vocal_segs: not a JSON list"),
    ("vocal_segs", "0;x", "row 3, column 'vocal_segs': vocal_segs must be start times"),
])
def test_table_cells_are_checked_with_the_http_rules(world, tmp_path, capfd, column, value, says):
    row = {"path": world["t"]["path"].iloc[0], "singer": "x", column: value}
    csv = _table(world, tmp_path, row)
    assert _enrol(world, csv, tmp_path / "cat") == 2
    err = capfd.readouterr().err
    assert says in err and "Traceback" not in err and len(err) < 2000, err[:3000]
    assert not (tmp_path / "cat").exists()  # refused before anything is enrolled


def test_an_oversized_table_is_refused_before_it_is_read(world, tmp_path, monkeypatch, capfd):
    from singerid.data import manifest

    csv = _table(world, tmp_path)
    monkeypatch.setattr(manifest, "MAX_TABLE_BYTES", 100)
    assert _enrol(world, csv, tmp_path / "cat") == 2
    assert "tracks table larger than" in capfd.readouterr().err


# ---------------------------------------------------------------------------------- 12. sparse files, ANSI names
def test_a_huge_sparse_file_is_refused_by_size_before_it_is_hashed(world, tmp_path, monkeypatch, caplog):
    from singerid.catalogue import catalogue as catalogue_module

    big = tmp_path / "sparse.wav"
    with open(big, "wb") as fh:
        fh.truncate(6 << 30)
    hashed = []
    real = catalogue_module.file_sha
    monkeypatch.setattr(catalogue_module, "file_sha", lambda p: hashed.append(p) or real(p))
    assert _enrol(world, _table(world, tmp_path, {"path": str(big), "singer": "x"}), tmp_path / "cat") == 2
    assert str(big) not in hashed
    assert "sparse.wav: file of 6.0 GiB is larger than the 2-GiB limit" in caplog.text


def test_control_characters_in_file_names_are_escaped(world, catalogue, tmp_path, capfd):
    evil = tmp_path / "\x1b[31mred\x07.wav"
    evil.write_text("not audio")
    assert main(["identify", str(evil), "--catalogue", str(catalogue)]) == 2
    err = capfd.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[31mred\\x07.wav" in err


# ---------------------------------------------------------------------------------- 5. identify is read-only
def _snapshot(folder) -> dict:
    """Every file of a catalogue folder with its content and mtime (the -shm wal-index is SQLite's shared memory)."""
    import hashlib

    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir()) if p.is_file() and not p.name.endswith("-shm")}


def test_identify_writes_nothing_to_the_catalogue(world, catalogue, monkeypatch, capfd):
    import faiss

    before = _snapshot(catalogue)

    def read_only_disk(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(faiss, "write_index", read_only_disk)
    monkeypatch.setattr(os, "replace", read_only_disk)
    for _ in range(2):
        assert main(["identify", world["t"]["path"].iloc[0], "--catalogue", str(catalogue)]) == 0
    assert _snapshot(catalogue) == before


def test_identify_on_a_catalogue_never_calibrated_calibrates_in_memory_only(world, tmp_path, capfd):
    cat = Catalogue.create(tmp_path / "cat", checkpoint=world["ckpt"], separate="none")
    cat.enroll(world["t"], workers=0, progress=False, calibrate_after=False)  # as if killed before calibrating
    cat.close()
    assert main(["identify", world["t"]["path"].iloc[0], "--catalogue", str(tmp_path / "cat")]) == 0
    assert "uncalibrated" not in capfd.readouterr().out
    assert Store(tmp_path / "cat").get_meta("calibration") is None  # not written by identify


# ---------------------------------------------------------------------------------- 6. damaged catalogue files
def _damage(catalogue, tmp_path, how: str):
    import shutil
    import sqlite3

    folder = tmp_path / how
    shutil.copytree(catalogue, folder)
    with sqlite3.connect(folder / "catalogue.sqlite") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for extra in ("catalogue.sqlite-wal", "catalogue.sqlite-shm"):
        (folder / extra).unlink(missing_ok=True)
    db = folder / "catalogue.sqlite"
    data = db.read_bytes()
    db.write_bytes({"truncated": data[: len(data) * 6 // 10], "random": np.random.default_rng(0).bytes(len(data)),
                    "empty": b""}[how])
    return folder


@pytest.mark.parametrize("how", ["truncated", "random", "empty"])
def test_a_damaged_catalogue_is_one_line_naming_the_file_and_the_rebuild(world, catalogue, tmp_path, capfd, how):
    folder = _damage(catalogue, tmp_path, how)
    wav = world["t"]["path"].iloc[0]
    for argv in (["identify", wav, "--catalogue", str(folder)], ["serve", "--catalogue", str(folder)],
                 ["remove-singer", "x", "--catalogue", str(folder)]):
        assert main(argv) == 2, argv
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err[-2000:]
        assert f"{folder / 'catalogue.sqlite'}: damaged catalogue database" in err and "singerid enroll" in err, err


# ---------------------------------------------------------------------------------- 12. RF64 claiming more data
@pytest.mark.parametrize("fmt", ["RF64", "WAV"])
def test_a_wav_or_rf64_cut_short_is_refused_as_truncated(tmp_path, fmt):
    from singerid.audio import AudioError, load_audio

    path = tmp_path / f"cut.{fmt.lower()}"
    sf.write(path, (0.3 * np.sin(np.arange(16000 * 6) / 5)).astype(np.float32), 16000, format=fmt, subtype="PCM_16")
    data = path.read_bytes()
    assert data[:4] == (b"RF64" if fmt == "RF64" else b"RIFF")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated: data chunk declares"):
        load_audio(path)
