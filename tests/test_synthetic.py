"""The synthetic-voice detector: features, training with leave-system-out thresholds, the CLI, identify answers, HTTP."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from singerid.synthetic import LfccConfig, SyntheticDetector, cut, installed_detector, lfcc_stats
from singerid.testing.synth import Voice, sing

SR = 16000


def vocoder(hop: int):
    """A family of crude vocoders: frame-wise magnitude-only resynthesis with random phase at hop `hop`; the
    members differ as real systems do, and share their trait (the phase is not the voice's)."""
    def system(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch

        s = torch.stft(torch.from_numpy(wave), 4 * hop, hop, window=torch.hann_window(4 * hop), return_complex=True)
        phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, s.shape).astype(np.float32))
        y = torch.istft(torch.polar(s.abs(), phase), 4 * hop, hop, window=torch.hann_window(4 * hop),
                        length=len(wave)).numpy()
        return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)
    return system


SYSTEMS = {f"hop{h}": vocoder(h) for h in (64, 128, 256)}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Real synthetic singing (8 voices × 2 songs, 7 s) and clones of 4 of the voices by 3 'systems' (4 clips each)."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    voices = [Voice.random(f"v{i}", rng) for i in range(8)]
    rows = []
    for i, v in enumerate(voices):
        for s in range(2):
            wave = sing(v, 7.0, np.random.default_rng([i, s]))
            path = root / f"{v.name}_{s}.flac"
            sf.write(path, wave, SR)
            rows.append({"path": str(path), "singer": v.name, "kind": "real", "stem": "vocals", "method": ""})
            if s == 0 and i < 4:
                for name, fn in SYSTEMS.items():
                    cpath = root / f"{name}_{v.name}.flac"
                    sf.write(cpath, fn(sing(v, 7.0, np.random.default_rng([i, 9])), rng), SR)
                    rows.append({"path": str(cpath), "singer": v.name, "kind": "cloned", "stem": "vocals",
                                 "method": name})
    table = pd.DataFrame(rows)
    table.to_csv(root / "tracks.csv", index=False)
    return {"root": root, "table": table, "csv": root / "tracks.csv"}


@pytest.fixture(scope="module")
def trained(world) -> tuple[SyntheticDetector, dict]:
    from singerid.synthetic_train import DetectorTrainConfig, train_detector

    return train_detector(world["table"], DetectorTrainConfig(), progress=False)


def test_features_are_per_window_and_ignore_level():
    wave = sing(Voice.random("a", np.random.default_rng(1)), 13.0, np.random.default_rng(2))
    starts, windows = cut(wave)
    assert starts == [0.0, 6.0] and windows.shape == (2, 6 * SR)
    f = lfcc_stats(windows)
    assert f.shape == (2, LfccConfig().dim) and np.isfinite(f).all()
    np.testing.assert_allclose(lfcc_stats(0.01 * windows), f, rtol=1e-3, atol=1e-3)
    assert cut(wave[: 2 * SR])[1].shape == (1, 6 * SR)  # a short clip still gives one window


def test_training_holds_out_each_system_and_sets_thresholds_from_it(trained):
    detector, report = trained
    assert set(report["per_system_eer"]) == set(SYSTEMS)
    assert report["scored"] == 28  # every clip scored once, by a detector that never saw its system or singer
    assert report["pooled_eer"] <= 0.25, report  # a member of the family never seen is still heard
    t = detector.thresholds
    assert 0 <= t.real <= t.synthetic <= 1 and t.false_alarm == 0.05 and t.eer == report["pooled_eer"]


def test_saved_detector_scores_the_same_and_refuses_a_foreign_folder(trained, world, tmp_path):
    detector, _ = trained
    wave = sf.read(world["table"]["path"].iloc[0], dtype="float32")[0]
    loaded = SyntheticDetector.load(detector.save(tmp_path / "det"))
    assert loaded.score_wave(wave) == detector.score_wave(wave)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "detector.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a synthetic-voice detector"):
        SyntheticDetector.load(tmp_path / "other")


def test_cli_train_then_detect_json_with_a_bad_file(world, tmp_path, capsys):
    from singerid.cli import main

    out = tmp_path / "det"
    assert main(["train-detector", "--manifest", str(world["csv"]), "--out", str(out)]) == 0
    assert "out-of-fold EER" in capsys.readouterr().out
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio at all" * 10)
    t = world["table"]
    clone, real = t[t["kind"] == "cloned"]["path"].iloc[0], t[t["kind"] == "real"]["path"].iloc[0]
    rc = main(["detect-synthetic", clone, str(bad), real, "--json", "--detector", str(out), "--separate", "none"])
    captured = capsys.readouterr()
    assert rc == 2 and "bad.wav" in captured.err
    answers = json.loads(captured.out)
    assert [a["path"] for a in answers] == [clone, str(bad), real]
    assert set(answers[1]) == {"path", "error"}
    for a in (answers[0], answers[2]):
        assert 0 <= a["score"] <= 1 and a["verdict"] in ("synthetic", "real", "uncertain") and a["windows"]
        assert a["source"] == "as given"
    assert answers[0]["score"] > answers[2]["score"]  # a training clone above a training real voice


def test_training_on_separated_remixes(world, tmp_path):
    from singerid.testing.synth import accompany
    from singerid.weights import WeightsMissing, locate

    try:
        locate("spleeter")
    except WeightsMissing:
        pytest.skip("spleeter weights not fetched (singerid fetch-weights)")
    from singerid.cli import main

    (tmp_path / "inst").mkdir()
    for k in range(2):
        sf.write(tmp_path / "inst" / f"i{k}.flac", accompany(10.0, np.random.default_rng(k)), SR)
    out = tmp_path / "det"
    assert main(["train-detector", "--manifest", str(world["csv"]), "--out", str(out),
                 "--instrumentals", str(tmp_path / "inst")]) == 0
    detector = SyntheticDetector.load(out)
    assert detector.meta["remixes"] == 1 and "separated" in detector.meta["out_of_fold"]
    assert detector.separated is not None and detector.separated.thresholds.eer is not None
    windows = np.stack([sing(Voice.random("q", np.random.default_rng(5)), 6.0, np.random.default_rng(6))])
    as_given, separated = detector.score_windows([0.0], windows), detector.score_windows([0.0], windows, "separated vocal")
    assert separated == {**detector.separated.score_windows([0.0], windows, "separated vocal")}
    assert as_given["score"] != separated["score"]  # two readers


def test_a_table_with_nothing_to_hold_out_is_refused(world, tmp_path, capsys):
    from singerid.cli import main

    t = world["table"]
    one = pd.concat([t[t["kind"] == "real"], t[(t["kind"] == "cloned") & (t["singer"] == "v0")].head(2)])
    one.assign(method="").to_csv(tmp_path / "one.csv", index=False)
    assert main(["train-detector", "--manifest", str(tmp_path / "one.csv")]) == 2
    assert "at least 2" in capsys.readouterr().err
    t[t["kind"] == "real"].head(3).to_csv(tmp_path / "real.csv", index=False)
    assert main(["train-detector", "--manifest", str(tmp_path / "real.csv")]) == 2


def test_without_a_detector_detect_exits_2_saying_how(tmp_path, capsys, monkeypatch):
    from singerid.cli import main

    monkeypatch.setenv("SINGERID_HOME", str(tmp_path))
    assert installed_detector() is None
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(SR, np.float32) + 0.1, SR)
    assert main(["detect-synthetic", str(wav), "--separate", "none"]) == 2
    assert "train-detector" in capsys.readouterr().err


def test_identify_answers_carry_the_synthetic_field_or_a_note(trained, synth_catalogue, tmp_path, monkeypatch):
    from singerid.catalogue import Catalogue
    from singerid.models import create_model, save_model
    from singerid.synthetic import NOT_INSTALLED

    t = pd.read_csv(synth_catalogue)
    t["path"] = [str(synth_catalogue.parent / p) for p in t["vocals_path"]]
    t["stem"] = "vocals"
    ckpt = save_model(tmp_path / "ck", create_model("tiny", seed=0))
    cat = Catalogue.create(tmp_path / "cat", checkpoint=str(ckpt), separate="none")
    cat.enroll(t[["path", "singer", "song", "stem"]].head(8), progress=False)
    cat.detector = None
    assert cat.identify(t["path"].iloc[0])["synthetic_note"] == NOT_INSTALLED
    damaged = tmp_path / "home" / "detector"
    damaged.mkdir(parents=True)
    (damaged / "detector.json").write_text("{not json")
    monkeypatch.setenv("SINGERID_HOME", str(tmp_path / "home"))  # a damaged install: identify goes on, says why
    note = Catalogue.open(tmp_path / "cat").identify(t["path"].iloc[0])["synthetic_note"]
    assert note.startswith("synthetic-voice detector not loaded")
    monkeypatch.delenv("SINGERID_HOME")
    cat.detector = trained[0]
    r = cat.identify(t["path"].iloc[0])
    assert set(r["synthetic"]) == {"score", "verdict", "source", "rates", "windows"} and "synthetic_note" not in r
    assert [w["start"] for w in r["synthetic"]["windows"]] == [w["start"] for w in r["windows"]]


def test_http_identify_carries_the_installed_detector(trained, synth_catalogue, tmp_path):
    httpx = pytest.importorskip("httpx")
    from test_service import _chromium, make_catalogue, start_server, stop

    trained[0].save(tmp_path / "home" / "detector")
    cat, t = make_catalogue(tmp_path, synth_catalogue, singers=3)
    proc, url = start_server(cat, env={**os.environ, "SINGERID_HOME": str(tmp_path / "home")})
    try:
        with open(t["path"].iloc[0], "rb") as fh:
            r = httpx.post(url + "/identify", files={"file": ("a.flac", fh, "audio/flac")}, timeout=60)
        assert r.status_code == 200, r.text
        s = r.json()["synthetic"]
        assert 0 <= s["score"] <= 1 and s["verdict"] in ("synthetic", "real", "uncertain") and s["windows"]
        exe = _chromium()
        sync_api = pytest.importorskip("playwright.sync_api") if exe else None
        if exe:  # the web page shows the verdict
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
                page = browser.new_page()
                page.goto(url + "/")
                page.set_input_files("#file", t["path"].iloc[0])
                page.click("#go")
                page.wait_for_selector("#result:not([hidden])", timeout=60000)
                text = page.inner_text("#synthetic")
                browser.close()
            assert text.startswith("Synthetic voice? ") and f"score {s['score']:.2f}" in text
    finally:
        stop(proc)
