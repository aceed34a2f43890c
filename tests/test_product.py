"""The product surface: decision tiers, calibration state, idempotent enrolment, known clones, CLI help/progress."""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from singerid.catalogue import Catalogue
from singerid.catalogue.calibrate import TIERS, decide, threshold_at, tier_thresholds
from singerid.catalogue.store import Store
from singerid.cli import main

from conftest import tiny_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory, "product", 3, 5)


def _enrol(world, csv, folder, *extra) -> int:
    return main(["enroll", str(csv), "--catalogue", str(folder), "--checkpoint", world["ckpt"], "--separate", "none",
                 "--workers", "0", *extra])


# ------------------------------------------------------------------------------------------ tiers on score arrays
def test_tier_thresholds_hold_their_false_acceptance_rates():
    rng = np.random.default_rng(0)
    impostor, genuine = rng.normal(0.3, 0.1, 2000), rng.normal(0.7, 0.1, 2000)
    levels = {t["tier"]: t for t in tier_thresholds(genuine, impostor)}
    for tier in TIERS:
        lv = levels[tier.name]
        assert lv["far"] <= tier.far and lv["far"] == pytest.approx(tier.far, abs=0.003)
        assert np.mean(impostor >= lv["threshold"]) == lv["far"] and lv["n_unknown"] == 2000
    assert levels["match"]["threshold"] > levels["possible"]["threshold"]
    assert levels["match"]["accept_real"] < levels["possible"]["accept_real"] <= 1
    assert threshold_at(np.array([0.1, 0.2, 0.9]), 0.01) > 0.9  # few impostors: above the highest, none accepted
    cal = {"tiers": tier_thresholds(genuine, impostor)}
    assert decide(1.0, cal)["tier"] == "match" and decide(levels["possible"]["threshold"], cal)["tier"] == "possible"
    assert decide(0.0, cal) == {"tier": "unknown", "far": None, "n_unknown": 2000}
    assert decide(1.0, {"threshold": None, "reason": "fewer than 2 singers"})["tier"] == "uncalibrated"


def test_one_ordering_by_the_decision_score_and_confidence_only_for_the_best():
    cal = {"tiers": [{"tier": "match", "threshold": 0.9, "far": 0.01, "n_unknown": 100},
                     {"tier": "possible", "threshold": 0.5, "far": 0.1, "n_unknown": 100}],
           "logistic": [10.0, -6.0], "threshold": 0.5}
    r = Catalogue._decision(["a", "b", "c"], np.array([0.6, 0.4, 0.55]), np.array([0, 5, 1]), 3, cal)
    assert [c["singer"] for c in r["candidates"]] == ["a", "c", "b"]  # by score, although b has the votes
    assert r["decision"] == "a" and r["tier"] == "possible" and r["far"] == 0.1
    assert r["candidates"][0]["confidence"] is not None and all(c["confidence"] is None for c in r["candidates"][1:])
    r = Catalogue._decision(["a", "b"], np.array([0.3, 0.2]), np.array([1, 1]), 2, cal)
    assert r["decision"] == "unknown" and r["tier"] == "unknown"


def test_imitation_note_only_when_closer_to_a_known_clone():
    from singerid.catalogue.catalogue import _imitation

    cal = {"threshold": 0.5}
    real = np.array([0.7, 0.1])
    assert _imitation(["x"], np.array([0.8]), real, cal)["note"] == "near a known imitation of x"
    assert _imitation(["x"], np.array([0.6]), real, cal) is None  # the real voice is closer
    assert _imitation(["x"], np.array([0.4]), real - 0.4, cal) is None  # not close to anything
    assert _imitation([], np.zeros(0), real, cal) is None
    margin = {**cal, "threshold": 0.9, "decision_score": "best+margin"}  # as one more candidate: 0.8 + (0.8 - 0.7)
    assert _imitation(["x"], np.array([0.8]), real, margin) is not None
    assert _imitation(["x"], np.array([0.72]), real, margin) is None  # as near the real voice: no margin


def test_decision_score_rewards_a_margin_over_the_runner_up():
    from singerid.catalogue.calibrate import decision_score

    assert decision_score(np.array([0.6, 0.4, 0.55])) == pytest.approx(0.65)
    assert decision_score(np.array([0.6, 0.4, 0.55]), "best") == pytest.approx(0.6)
    assert decision_score(np.array([0.6])) == pytest.approx(0.6)  # no runner-up
    cal = {"tiers": [{"tier": "possible", "threshold": 1.0, "far": 0.1, "n_unknown": 100}], "threshold": 1.0,
           "decision_score": "best+margin", "logistic": [10.0, -9.0]}
    between = Catalogue._decision(["a", "b", "c"], np.array([0.9, 0.89, 0.1]), np.zeros(3, int), 3, cal)
    alone = Catalogue._decision(["a", "b", "c"], np.array([0.9, 0.5, 0.1]), np.zeros(3, int), 3, cal)
    assert between["decision"] == "unknown" and between["decision_score"] == pytest.approx(0.91)
    assert alone["decision"] == "a" and alone["decision_score"] == pytest.approx(1.3)  # same best score, one singer
    assert alone["candidates"][0]["confidence"] > between["candidates"][0]["confidence"]


# ------------------------------------------------------------------------------------------ catalogue state
def test_duplicate_rows_and_copies_enrol_once(world, tmp_path):
    t = world["t"]
    copy = tmp_path / "copy.flac"
    shutil.copy(t["path"].iloc[0], copy)
    dup = pd.concat([t, t.iloc[:2], t.iloc[:1].assign(path=str(copy))])
    dup.to_csv(tmp_path / "dup.csv", index=False)
    assert _enrol(world, tmp_path / "dup.csv", tmp_path / "cat") == 0
    cat = Catalogue.open(tmp_path / "cat")
    assert cat.store.count() == len(t)
    assert _enrol(world, tmp_path / "dup.csv", tmp_path / "cat") == 0  # a retry adds nothing
    assert Catalogue.open(tmp_path / "cat").store.count() == len(t)


def test_known_clones_never_count_as_the_real_voice(world, tmp_path):
    t = world["t"]
    clones = t[t["singer"] == "singer01"].assign(singer="singer00", kind="cloned")
    pd.concat([t.assign(kind="real"), clones]).to_csv(tmp_path / "with_clones.csv", index=False)
    assert _enrol(world, tmp_path / "with_clones.csv", tmp_path / "cat") == 0
    cat = Catalogue.open(tmp_path / "cat")
    assert cat.store.count() == len(t) + len(clones)
    names, cents = cat.centroids()
    clone_names, _ = cat.clone_centroids()
    assert names == sorted(set(t["singer"])) and clone_names == ["singer00"]
    real = {s: n for s, n in cat.store.db.execute("SELECT singer, COUNT(*) FROM tracks WHERE kind='real' GROUP BY singer")}
    assert real["singer00"] == (t["singer"] == "singer00").sum()
    assert len(cat.store.track_vectors("real")) == len(t)  # calibration sees real voices only
    r = cat.identify(clones["path"].iloc[0])
    assert "imitation" in r and all(n["kind"] in ("real", "cloned") for n in r["nearest_tracks"])


def test_one_singer_is_uncalibrated_never_a_definite_answer(world, tmp_path, capsys):
    t = world["t"]
    t[t["singer"] == "singer00"].to_csv(tmp_path / "one.csv", index=False)
    assert _enrol(world, tmp_path / "one.csv", tmp_path / "cat") == 0
    assert "uncalibrated" in capsys.readouterr().out
    r = Catalogue.open(tmp_path / "cat").identify(t["path"].iloc[-1])
    assert r["decision"] == "unknown" and r["tier"] == "uncalibrated" and r["candidates"][0]["singer"] == "singer00"
    assert main(["identify", t["path"].iloc[-1], "--catalogue", str(tmp_path / "cat")]) == 0
    assert "unknown (uncalibrated" in capsys.readouterr().out


def test_calibrated_at_open_after_an_enrolment_killed_before_calibration(world, tmp_path):
    cat = Catalogue.create(tmp_path / "cat", checkpoint=world["ckpt"], separate="none")
    cat.enroll(world["t"], workers=0, progress=False, calibrate_after=False)  # as if killed before the end
    assert cat.store.get_meta("calibration") is None
    again = Catalogue.open(tmp_path / "cat")
    cal = again.store.get_meta("calibration")
    assert cal["tiers"] and cal["generation"] == again.store.generation()
    assert again.identify(world["t"]["path"].iloc[0])["tier"] in ("match", "possible", "unknown")
    again.close()
    old_rule = {k: v for k, v in cal.items() if k != "decision_score"}  # calibrated on the best score alone
    Store(tmp_path / "cat").set_meta(calibration=old_rule)
    readonly = Catalogue.open(tmp_path / "cat", readonly=True)  # identify's view: recalibrated in memory only
    assert readonly.store.get_meta("calibration")["decision_score"] == "best+margin"
    assert "decision_score" not in Store(tmp_path / "cat").get_meta("calibration")
    assert Catalogue.open(tmp_path / "cat").store.get_meta("calibration") == cal  # and written by a writer


def test_two_enrols_creating_one_catalogue_at_once(world, tmp_path):
    t = world["t"]
    for i, part in enumerate((t.iloc[::2], t.iloc[1::2])):
        part.to_csv(tmp_path / f"p{i}.csv", index=False)
    cmd = [sys.executable, "-m", "singerid.cli", "--threads", "1", "enroll", "--catalogue", str(tmp_path / "cat"),
           "--checkpoint", world["ckpt"], "--separate", "none", "--workers", "0"]
    procs = [subprocess.Popen([*cmd, str(tmp_path / f"p{i}.csv")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert Catalogue.open(tmp_path / "cat").store.count() == len(t)


# ------------------------------------------------------------------------------------------ CLI surface
def test_version_help_defaults_and_exit_codes(capsys):
    from singerid import __version__
    from singerid.cli.parser import build_parser

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        undocumented = [a.dest for a in sp._actions if not a.help]
        assert not undocumented, (name, undocumented)
        text = sp.format_help()
        assert "exit codes: 0 ok; 2 bad input" in text, name
        for a in sp._actions:
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS, []) and a.help:
                assert "default" in a.help or f"(default: {a.default}" in " ".join(text.split()), (name, a.dest)
    assert "(default: 8000)" in sub.choices["serve"].format_help()
    assert build_parser().parse_args(["identify", "x.wav", "--catalogue", "c", "-v", "--threads", "1"]).verbose


def test_progress_is_logged_when_not_a_terminal(caplog):
    import io

    from singerid.progress import log_progress

    with caplog.at_level(logging.INFO, logger="singerid"):
        assert list(log_progress(range(5), 5, "enrol", every_s=0.0, stream=io.StringIO())) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("enrol: 3/5 tracks") for m in lines) and lines[-1].startswith("enrol: 5/5 tracks done")
    caplog.clear()

    class Tty(io.StringIO):
        def isatty(self):
            return True

    with caplog.at_level(logging.INFO, logger="singerid"):
        list(log_progress(range(5), 5, "enrol", every_s=0.0, stream=Tty()))  # a terminal has tqdm's bar
    assert not caplog.records


def test_enrol_reports_each_bad_row_once(world, tmp_path, capfd, caplog):
    t = world["t"]
    (tmp_path / "bad.wav").write_text("not audio")
    bad = pd.DataFrame([{"path": str(tmp_path / "bad.wav"), "singer": "x", "song": "b", "stem": "vocals"}])
    pd.concat([t.iloc[:3], bad]).to_csv(tmp_path / "t.csv", index=False)
    capfd.readouterr()
    assert _enrol(world, tmp_path / "t.csv", tmp_path / "cat") == 2  # a row failed (issue 32)
    out, err = capfd.readouterr()
    assert (out + err + caplog.text).count("bad.wav") == 1, out + err + caplog.text  # (the log goes to stderr)
    assert "1 not enrolled (row 4;" in out


def test_the_quickstart_names_enrolled_singers_and_not_the_one_nobody_enrolled(tmp_path, capsys):
    """The README's first command: held-out songs of the eight enrolled singers named, the ninth singer 'unknown'."""
    assert main(["quickstart", "--workdir", str(tmp_path / "qs")]) == 0
    out = capsys.readouterr().out
    assert "held-out songs of enrolled singers identified: 8/8; not-enrolled singer answered 'unknown': 2/2" in out
    assert (tmp_path / "qs" / "catalogue").is_dir()
