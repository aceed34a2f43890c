"""Separation-free student distilled from the vocal path (issue 11): the mixing batch, a few steps that lower the loss,
a self-describing student checkpoint, and catalogues shared between a student and its teacher."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from singerid.catalogue import Catalogue
from singerid.cli import main
from singerid.data.manifest import load_tracks
from singerid.embed import ModelEmbedder, iter_track_embeddings, second_view, two_view_track
from singerid.models import create_model, save_model
from singerid.models.backend import BackendConfig, ScoringBackend
from singerid.models.identity import embedding_space
from singerid.train.distill import (
    DistillBatches,
    instrumental_files,
    load_teacher,
    mean_voice,
    step_loss,
    vocal_files,
)
from singerid.train.distill_run import resolve
from singerid.train.loop import TrainConfig, train
from singerid.weights import WeightsMissing, locate


def _power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def _pool(table: Path):
    t = load_tracks(table)
    return vocal_files(t), instrumental_files(pd.DataFrame({"path": t["accompaniment_path"]}))


@pytest.fixture(scope="module")
def teacher(synth_catalogue, tmp_path_factory) -> Path:
    """A tiny AST checkpoint with a scoring backend: the frozen teacher."""
    folder = tmp_path_factory.mktemp("teacher") / "ckpt"
    model = create_model("tiny", seed=0)
    save_model(folder, model, {"note": "test teacher"})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, model.cfg.embed_dim)).astype(np.float32)
    ScoringBackend.fit(x, np.repeat(np.arange(6), 10), BackendConfig(kind="wccn")).save(folder)
    return folder


def _instrumentals(table: Path, folder: Path) -> Path:
    """The synthetic table has no stem=instrumental rows: its accompaniment stems become an instrumentals table."""
    t = pd.read_csv(table)
    insts = folder / "insts.csv"
    pd.DataFrame({"path": [str(Path(table).parent / p) for p in t["accompaniment_path"]],
                  "singer": "", "stem": "instrumental"}).to_csv(insts, index=False)
    return insts


@pytest.fixture(scope="module")
def student(synth_catalogue, teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill") / "run"
    insts = _instrumentals(synth_catalogue, out.parent)
    train(TrainConfig(manifest=str(synth_catalogue), out=str(out), mode="distill", model="tiny", teacher=str(teacher),
                      batch_pairs=4, lr=1e-3, epoch_steps=4, val_steps=1, max_epochs=3, num_workers=0, device="cpu",
                      seed=0, instrumentals=str(insts), val_instrumentals=2))
    return out


@pytest.mark.parametrize("vda", [-6.0, 0.0, 9.0])
def test_batch_mixes_at_the_asked_ratio_with_its_own_clean_vocal(synth_catalogue, vda):
    vocals, insts = _pool(synth_catalogue)
    ds = DistillBatches(vocals, insts, batch=6, seed=3, steps=4, seconds=3.0, vda_db=(vda, vda))
    b = ds[1]
    mix, voc, acc = (b[k].numpy() for k in ("mixture", "vocal", "accompaniment"))
    assert mix.shape == voc.shape == acc.shape == (6, 48000)
    assert np.abs(mix).max(axis=1) == pytest.approx(1.0, abs=1e-5)  # peak-normalised, as at inference
    vocal_part = mix - acc
    for i in range(6):
        assert _power_db(vocal_part[i]) - _power_db(acc[i]) == pytest.approx(vda, abs=0.05)
        corr = np.corrcoef(vocal_part[i], voc[i])[0, 1]
        assert corr > 0.999, "the mixture's vocal is not the clean vocal the teacher reads"
        others = [abs(np.corrcoef(vocal_part[i], voc[j])[0, 1]) for j in range(6) if j != i]
        assert max(others) < 0.9
    assert np.all(b["vda"].numpy() == pytest.approx(vda))
    again = ds[1]
    assert np.array_equal(again["mixture"].numpy(), mix)  # a pure function of (seed, step)


def test_batch_draws_ratios_in_range(synth_catalogue):
    vocals, insts = _pool(synth_catalogue)
    ds = DistillBatches(vocals, insts, batch=16, seed=0, steps=2, seconds=2.0)
    v = ds[0]["vda"].numpy()
    assert v.min() >= -6 and v.max() <= 12 and v.std() > 1


def test_a_clean_share_leaves_that_share_of_examples_unaccompanied(synth_catalogue):
    vocals, insts = _pool(synth_catalogue)
    ds = DistillBatches(vocals, insts, batch=16, seed=0, steps=4, seconds=2.0, clean=0.5)
    b = [ds[i] for i in range(4)]
    vda = np.concatenate([x["vda"].numpy() for x in b])
    clean = np.isinf(vda)
    assert 0.25 < clean.mean() < 0.75
    mix, voc, acc = (np.concatenate([x[k].numpy() for x in b]) for k in ("mixture", "vocal", "accompaniment"))
    assert np.all(acc[clean] == 0) and np.allclose(mix[clean], voc[clean], atol=1e-6)  # the student reads the vocal
    assert np.all(np.abs(acc[~clean]).max(axis=1) > 0) and vda[~clean].max() <= 12
    plain = DistillBatches(vocals, insts, batch=16, seed=0, steps=4, seconds=2.0)
    assert not np.isinf(plain[0]["vda"].numpy()).any()


def test_stretch_plays_the_instrumental_faster_or_slower(synth_catalogue, tmp_path):
    """--distill-stretch: an instrumental window resampled by the drawn factor: a 440-Hz tone comes out at 440 × f."""
    import soundfile as sf

    vocals, _ = _pool(synth_catalogue)
    tone = tmp_path / "tone.wav"
    sf.write(tone, 0.5 * np.sin(2 * np.pi * 440 * np.arange(10 * 16000) / 16000), 16000)

    def peak_hz(stretch):
        ds = DistillBatches(vocals, [(str(tone), 10.0)], batch=4, seed=0, steps=1, seconds=2.0, stretch=stretch)
        acc = ds[0]["accompaniment"].numpy()
        assert acc.shape == (4, 32000) and np.all(np.abs(acc[:, -100:]).max(axis=1) > 0)  # the window is filled
        return np.fft.rfftfreq(32000, 1 / 16000)[np.abs(np.fft.rfft(acc, axis=1)).argmax(axis=1)]

    np.testing.assert_allclose(peak_hz(None), 440, atol=1)
    np.testing.assert_allclose(peak_hz((1.5, 1.5)), 660, atol=1)
    drawn = peak_hz((0.8, 1.25))
    assert drawn.min() >= 0.8 * 440 - 1 and drawn.max() <= 1.25 * 440 + 1 and drawn.std() > 5


def test_instrumentals_from_several_tables_and_folders_are_pooled_once(synth_catalogue, tmp_path):
    """`--instrumentals` repeated (a table and a folder of separated accompaniments): their rows together, each
    file once."""
    from singerid.train.recipe import instrumental_table

    t = load_tracks(synth_catalogue)
    accs = [str(Path(synth_catalogue).parent / p) for p in pd.read_csv(synth_catalogue)["accompaniment_path"]]
    table = tmp_path / "insts.csv"
    pd.DataFrame({"path": accs[:3], "singer": "", "stem": "instrumental"}).to_csv(table, index=False)
    folder = tmp_path / "acc"
    folder.mkdir()
    for a in accs[2:5]:  # one file in both
        (folder / Path(a).name).symlink_to(a)
    rows = instrumental_table((str(table), str(folder)), t)
    assert len(rows) == 6 and len(set(rows["path"])) == 6 and set(rows["stem"]) == {"instrumental"}
    assert len(instrumental_files(rows)) == 6


def test_a_digitally_silent_stretch_of_a_vocal_stem_is_a_quiet_draw(synth_catalogue, tmp_path):
    """Separated vocals hold exact zeros between phrases: such a window is a silent draw (redrawn, else zeros), not an
    error that stops the run; other bad audio still raises."""
    import soundfile as sf

    from singerid.audio import AudioError

    vocals, insts = _pool(synth_catalogue)
    gap = tmp_path / "gap.flac"
    sf.write(gap, np.concatenate([np.zeros(16000 * 4), 0.3 * np.sin(np.arange(16000 * 3) / 5.0)]), 16000)
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(16000 * 4), 16000)
    ds = DistillBatches([(str(gap), 7.0)], insts, batch=2, seed=0, steps=1, seconds=3.2)
    rng = np.random.default_rng(0)
    assert not ds._window(str(silent), 4.0, rng, 3.2).any()  # nothing but silence to draw from: zeros
    assert np.abs(ds._window(str(gap), 7.0, rng, 3.2)).max() > 0.1  # a redraw finds the voice
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioError):
        ds._window(str(bad), 7.0, rng, 3.2)


def test_a_few_distillation_steps_lower_the_loss(synth_catalogue, teacher):
    """The default objective (cosine to the teacher's clean-vocal units, gaps taught the mean voice, contrastive
    term), a student started from the teacher, a few Adam steps on synthetic singers' mixtures."""
    vocals, insts = _pool(synth_catalogue)
    cfg = resolve(TrainConfig(manifest=str(synth_catalogue), out="unused", mode="distill", model="tiny",
                              teacher=str(teacher)))
    t_model, _, _ = load_teacher(str(teacher))
    s_model = copy.deepcopy(t_model).requires_grad_(True).train()
    ds = DistillBatches(vocals, insts, batch=8, seed=0, steps=1, seconds=6.0)
    batch = ds[0]
    gap = mean_voice(t_model, ds, "cpu", batches=1)
    opt = torch.optim.Adam(s_model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        res = step_loss(s_model, t_model, batch, cfg.distill_nce, gap)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["loss"].detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_distillation_writes_a_self_describing_student(student, teacher):
    with open(student / "log.csv") as fh:
        val = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    assert len(val) == 4 and all(r["cosine"] and r["identified"] for r in val)  # before, then after 3 epochs
    meta = json.loads((student / "best" / "config.json").read_text())
    assert meta["input"] == "mixture"
    assert meta["distilled"]["teacher"] == str(teacher.resolve())
    assert meta["embedding_space"] == embedding_space(checkpoint=str(teacher))
    assert (student / "best" / "backend.safetensors").is_file()  # the teacher's backend: same space
    emb = ModelEmbedder.from_checkpoint(student, "cpu")
    assert emb.reads_mixtures and emb.space == ModelEmbedder.from_checkpoint(teacher, "cpu").space
    assert emb.dim == ScoringBackend.load(teacher).dim


def test_a_resumed_distillation_continues_exactly(synth_catalogue, teacher, tmp_path):
    """A run stopped at step 3 and resumed to step 6 logs what the uninterrupted run logs (batches are a function of
    (seed, step); weights, optimiser and scheduler come back from the checkpoint)."""
    common = dict(manifest=str(synth_catalogue), mode="distill", model="tiny", teacher=str(teacher), batch_pairs=4,
                  lr=1e-3, epoch_steps=3, val_steps=1, num_workers=0, device="cpu", seed=0, scoring="none",
                  instrumentals=str(_instrumentals(synth_catalogue, tmp_path)), distill_stretch=(0.8, 1.25))
    full = train(TrainConfig(out=str(tmp_path / "full"), max_steps=6, **common))
    part = train(TrainConfig(out=str(tmp_path / "part"), max_steps=3, **common))
    train(TrainConfig(out=str(part), max_steps=6, resume=True, **common))

    def log(run: Path) -> dict[tuple[int, str], float]:
        with open(run / "log.csv") as fh:
            return {(int(r["step"]), r["split"]): float(r["loss"]) for r in csv.DictReader(fh)}

    a, b = log(full), log(part)
    assert sorted(b) == sorted(a)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    assert json.loads((full / "best" / "config.json").read_text())["distilled"]["stretch"] == [0.8, 1.25]


def test_a_checkpoint_of_a_removed_experiment_is_refused_clearly(tmp_path):
    """Students trained with options removed after c20fdcd (a mel gate, a wider input) are refused with a message
    naming the option, not a crash on mismatched weights; the default values of those keys still load."""
    from singerid.models import load_model

    folder = save_model(tmp_path / "plain", create_model("tiny", seed=0))
    meta = json.loads((folder / "config.json").read_text())
    for key, value, name in (("prenet", 128, "--distill-prenet"), ("input", "stft", "--distill-input"),
                             ("fine", 1024, "--distill-fine")):
        meta["model"] = {**meta["model"], "architecture": "ge2e", "encoder": {"hidden": 8, key: value}}
        (folder / "config.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=f"{name}.*c20fdcd"):
            load_model(folder)
    from singerid.models.factory import SingerModel, get_config

    cfg = get_config("voice")
    cfg.encoder = {**cfg.encoder, "prenet": 0, "input": "mel", "fine": 0}
    assert SingerModel(cfg).encoder.lstm.input_size == 40


def _tracks(table: Path, songs: list[int]) -> pd.DataFrame:
    t = load_tracks(table)
    return t[t["song"].str[-1].astype(int).isin(songs)]


def test_student_and_teacher_share_catalogues_and_an_unrelated_model_is_refused(synth_catalogue, student, teacher,
                                                                                  tmp_path):
    cat = Catalogue.create(tmp_path / "cat", checkpoint=str(student), separate="none")
    cat.enroll(_tracks(synth_catalogue, [0, 1, 2]), workers=0, progress=False)
    assert cat.model()["input"] == "mixture" and cat.separator is None
    query = _tracks(synth_catalogue, [3])["path"].iloc[0]
    own = cat.identify(query)
    assert own["windows"] and all({"start", "singer", "score"} <= set(w) for w in own["windows"])  # per-window evidence
    cat.close()
    by_teacher = Catalogue.open(tmp_path / "cat", checkpoint=str(teacher))
    r = by_teacher.identify(query)
    assert r["candidates"] and r["windows"]
    assert by_teacher.embedder.space == by_teacher.model()["space"]
    by_teacher.close()
    unrelated = tmp_path / "other"
    save_model(unrelated, create_model("tiny", seed=1))
    with pytest.raises(ValueError, match="embedding space"):
        Catalogue.open(tmp_path / "cat", checkpoint=str(unrelated))
    # the same through the CLI: the teacher answers, the unrelated model is refused (exit 2)
    assert main(["identify", query, "--catalogue", str(tmp_path / "cat"), "--checkpoint", str(teacher), "--json"]) == 0
    assert main(["identify", query, "--catalogue", str(tmp_path / "cat"), "--checkpoint", str(unrelated)]) == 2


def test_teacher_catalogue_queried_by_the_student(synth_catalogue, student, teacher, tmp_path):
    cat = Catalogue.create(tmp_path / "cat", checkpoint=str(teacher), separate="none")
    cat.enroll(_tracks(synth_catalogue, [0, 1]), workers=0, progress=False)
    cat.close()
    by_student = Catalogue.open(tmp_path / "cat", checkpoint=str(student))
    assert by_student.separator is None  # the student reads the raw mixture
    assert by_student.identify(_tracks(synth_catalogue, [3])["path"].iloc[0])["candidates"]


def test_a_student_enrols_each_track_raw_and_separated_and_is_queried_raw(synth_catalogue, student, tmp_path):
    """Two-view enrolment (docs/results.md: +4 to +7 points of P3 for every student measured): each catalogue track's
    embedding is the mean of the student's readings of the raw mixture and of Spleeter's vocal; the windows (evidence)
    and every query stay raw. The choice is fixed when the catalogue is made."""
    try:
        locate("spleeter")
    except WeightsMissing:
        pytest.skip("spleeter weights not fetched (singerid fetch-weights)")
    from singerid.separation import load_separator

    tracks = _tracks(synth_catalogue, [0, 1, 2])
    cat = Catalogue.create(tmp_path / "cat", checkpoint=str(student), enrol_views="mixture+separated")
    assert cat.store.get_meta("enrol_also_separated") == "spleeter" and cat.separator is None
    cat.enroll(tracks, workers=0, progress=False)
    emb = ModelEmbedder.from_checkpoint(student, "cpu")
    path = tracks["path"].iloc[0]
    raw, = iter_track_embeddings(emb, [path], workers=0, progress=False)
    sep, = iter_track_embeddings(emb, [path], workers=0, progress=False, separator=load_separator("spleeter"))
    assert float(raw.track @ sep.track) < 0.9999  # the two readings differ
    ids, stored, _ = cat.store.track_embeddings()
    first = stored[0]  # tracks are enrolled in table order
    np.testing.assert_allclose(first, two_view_track(raw.track, sep.track), atol=1e-5)
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(cat.store.query_vectors()[int(ids[0])][0], raw.track, atol=1e-5)  # for calibration
    query = _tracks(synth_catalogue, [3])["path"].iloc[0]
    r = cat.identify(query)
    q, = iter_track_embeddings(emb, [query], workers=0, progress=False)
    names, cents = cat.centroids()
    expect = cat._track_score(q.track[None], "real", (names, cents))  # the query read raw
    best = int(np.argmax(expect))
    assert (r["candidates"][0]["singer"], r["candidates"][0]["score"]) == (names[best], round(float(expect[best]), 4))
    cat.close()
    with pytest.raises(ValueError, match="enrolled the same way"):
        Catalogue.create(tmp_path / "cat", checkpoint=str(student), enrol_views="mixture")
    reopened = Catalogue.create(tmp_path / "cat", checkpoint=str(student))  # auto: keeps what the catalogue does
    assert reopened.second_view is not None
    reopened.close()
    # evaluate: the enrolment read both ways, recorded; the CLI's --enrol-views chooses
    from singerid.eval.evaluate import evaluate

    query_t = _tracks(synth_catalogue, [3])
    two = evaluate(tracks, query_t, emb, workers=0, enrol_separated=load_separator("spleeter"))
    one = evaluate(tracks, query_t, emb, workers=0)
    assert (two["enrol_views"], one["enrol_views"]) == ("mixture+separated", "one")
    assert [q["predicted"] for q in two["queries"]] != [q["predicted"] for q in one["queries"]]
    tracks.to_csv(tmp_path / "enrol.csv", index=False)
    query_t.to_csv(tmp_path / "query.csv", index=False)
    args = ["evaluate", "--enroll", str(tmp_path / "enrol.csv"), "--query", str(tmp_path / "query.csv"),
            "--checkpoint", str(student), "--workers", "0", "--cache", "none", "--json", str(tmp_path / "r.json")]
    for views, recorded in (("mixture+separated", "mixture+separated"), ("mixture", "one")):
        assert main(args + ["--enrol-views", views]) == 0
        assert json.loads((tmp_path / "r.json").read_text())["enrol_views"] == recorded


def test_enroll_cli_reads_a_students_tracks_both_ways_by_default(synth_catalogue, student, tmp_path, capsys):
    try:
        locate("spleeter")
    except WeightsMissing:
        pytest.skip("spleeter weights not fetched (singerid fetch-weights)")
    _tracks(synth_catalogue, [0]).to_csv(tmp_path / "t.csv", index=False)
    args = ["enroll", str(tmp_path / "t.csv"), "--checkpoint", str(student), "--workers", "0"]
    assert main(args + ["--catalogue", str(tmp_path / "cat")]) == 0
    assert "each track read raw and separated" in capsys.readouterr().out
    cat = Catalogue.open(tmp_path / "cat")
    assert cat.store.get_meta("enrol_also_separated") == "spleeter" and len(cat.store.query_vectors())
    cat.close()
    assert main(args + ["--catalogue", str(tmp_path / "one"), "--enrol-views", "mixture"]) == 0
    cat = Catalogue.open(tmp_path / "one")
    assert cat.second_view is None and not cat.store.query_vectors()
    cat.close()
    assert main(args + ["--catalogue", str(tmp_path / "one"), "--enrol-views", "mixture+separated"]) == 2  # fixed
    assert main(args + ["--catalogue", str(tmp_path / "ray"), "--ray", "--enrol-views", "mixture+separated"]) == 2
    assert not (tmp_path / "ray").exists()  # refused before anything was written


def test_enrolment_views_need_a_separator_only_when_asked(student, teacher, monkeypatch):
    from singerid import weights

    def missing(name):
        raise WeightsMissing(name)

    monkeypatch.setattr(weights, "locate", missing)
    s_emb, t_emb = (ModelEmbedder.from_checkpoint(p, "cpu") for p in (student, teacher))
    assert second_view(s_emb, "auto") is None  # no weights: one view, quietly
    assert second_view(s_emb, "mixture") is None and second_view(t_emb, "mixture+separated") is None
    assert second_view(s_emb, "auto", separate="none") is None
    with pytest.raises(ValueError, match="fetch-weights"):
        second_view(s_emb, "mixture+separated")
    with pytest.raises(ValueError, match="enrolment views"):
        second_view(s_emb, "both")


def test_distill_needs_a_teacher_of_the_same_architecture(synth_catalogue, teacher, tmp_path):
    with pytest.raises(ValueError, match="--teacher"):
        train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "a"), mode="distill", model="tiny"))
    with pytest.raises(ValueError, match="architecture|teacher is"):
        train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "b"), mode="distill", model="voice",
                          teacher=str(teacher)))


def test_a_backend_refitted_on_the_student_still_reads_mixtures(student, synth_catalogue, tmp_path):
    """fit-scoring on a student keeps `input: mixture` (no separation in front of it), but its new backend is a new
    embedding space: the teacher's catalogues no longer accept it."""
    from singerid.cli import main

    out = tmp_path / "refit"
    assert main(["fit-scoring", "--manifest", str(synth_catalogue), "--checkpoint", str(student), "--out", str(out),
                 "--separate", "none", "--asnorm-k", "2", "--workers", "0"]) == 0
    emb = ModelEmbedder.from_checkpoint(out, "cpu")
    assert emb.reads_mixtures and emb.space != ModelEmbedder.from_checkpoint(student, "cpu").space
    # the remixes also read through spleeter, as a two-view catalogue enrols: twice the remixed rows
    insts = _instrumentals(synth_catalogue, tmp_path)
    n = {}
    for views in ("mixture", "mixture+separated"):
        assert main(["fit-scoring", "--manifest", str(synth_catalogue), "--checkpoint", str(student), "--out",
                     str(tmp_path / views), "--instrumentals", str(insts), "--enrol-views", views,
                     "--asnorm-k", "2", "--workers", "0"]) == 0
        n[views] = ScoringBackend.load(tmp_path / views).info["n"]
    plain = ScoringBackend.load(out).info["n"]
    assert n["mixture+separated"] - n["mixture"] == n["mixture"] - plain > 0


def test_distill_can_refit_the_backend_on_the_students_own_unseparated_views(synth_catalogue, teacher, tmp_path,
                                                                            monkeypatch):
    """`--scoring wccn` in distill: the student's backend is fitted on its own views (remixes read raw, and through
    the second view its catalogues enrol with: asked for as `auto`, here declined), so it leaves its teacher's space;
    `teacher` is refused outside distill."""
    import singerid.scoring
    import singerid.separation

    asked = []
    for module in (singerid.separation, singerid.scoring):
        monkeypatch.setattr(module, "load_separator", lambda *a, **k: pytest.fail("separator loaded"))
    monkeypatch.setattr(singerid.scoring, "second_view", lambda emb, views, separate, *a: asked.append((views, separate)))
    insts = _instrumentals(synth_catalogue, tmp_path)
    out = train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "run"), mode="distill", model="tiny",
                            teacher=str(teacher), batch_pairs=4, epoch_steps=2, val_steps=1, max_epochs=1,
                            num_workers=0, device="cpu", instrumentals=str(insts), val_instrumentals=2,
                            scoring="wccn", asnorm_k=2))
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["input"] == "mixture" and "embedding_space" not in meta and asked == [("auto", "spleeter")]
    refit, carried = ScoringBackend.load(out / "best"), ScoringBackend.load(teacher)
    assert refit.info["classes"] == len(set(load_tracks(synth_catalogue)["singer"]))
    assert refit.info["n"] != carried.info["n"] == 60  # fitted here, not the teacher's (60 random vectors) carried
    emb = ModelEmbedder.from_checkpoint(out, "cpu")
    assert emb.reads_mixtures and emb.space != ModelEmbedder.from_checkpoint(teacher, "cpu").space
    with pytest.raises(ValueError, match="--scoring teacher"):
        train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "b"), mode="vocal", model="tiny",
                          scoring="teacher"))


def _another_seed(student: Path, out: Path, scale: float = 0.05) -> Path:
    """A copy of the student's checkpoint with every float weight moved a little: another run of the same recipe."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(student / "best", out)
    gen = torch.Generator().manual_seed(1)
    state = load_file(str(out / "model.safetensors"))
    save_file({k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
               for k, v in state.items()}, str(out / "model.safetensors"))
    return out


def test_averaged_students_keep_their_teachers_space_and_backend(synth_catalogue, student, teacher, tmp_path):
    """`singerid average`: the soup's weights are the (weighted) mean of its ingredients'; two students of one teacher
    average into a student of the same space that still reads mixtures, carries the shared backend and answers a
    catalogue the teacher enrolled; weights (1, 0) give back the first ingredient exactly."""
    from safetensors.torch import load_file

    from singerid.models.average import average_checkpoints

    other = _another_seed(student, tmp_path / "seed1")
    assert main(["average", str(student), str(other), "--out", str(tmp_path / "soup")]) == 0
    a, b, m = (load_file(str(p / "model.safetensors")) for p in (student / "best", other, tmp_path / "soup"))
    assert all(torch.allclose(m[k], (a[k] + b[k]) / 2, atol=1e-6) for k in a if a[k].is_floating_point())
    meta = json.loads((tmp_path / "soup" / "config.json").read_text())
    assert meta["input"] == "mixture" and meta["average"]["weights"] == [1.0, 1.0]
    assert meta["average"]["from"] == [str((student / "best").resolve()), str(other.resolve())]
    soup = ModelEmbedder.from_checkpoint(tmp_path / "soup", "cpu")
    assert soup.reads_mixtures and soup.space == ModelEmbedder.from_checkpoint(teacher, "cpu").space
    assert _same(ScoringBackend.load(tmp_path / "soup"), ScoringBackend.load(teacher))
    cat = Catalogue.create(tmp_path / "cat", checkpoint=str(teacher), separate="none")
    cat.enroll(_tracks(synth_catalogue, [0, 1]), workers=0, progress=False)
    cat.close()
    assert Catalogue.open(tmp_path / "cat", checkpoint=str(tmp_path / "soup")).identify(
        _tracks(synth_catalogue, [3])["path"].iloc[0])["candidates"]
    first = average_checkpoints([student, other], tmp_path / "first", weights=[1.0, 0.0])
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 16000 * 3)).astype(np.float32))
    s, f = (ModelEmbedder.from_checkpoint(p, "cpu").model for p in (student, first))
    with torch.no_grad():
        assert torch.allclose(s.encode(wave), f.encode(wave), atol=1e-6)


def test_a_student_averaged_with_its_teacher_reads_mixtures_in_the_teachers_space(student, teacher, tmp_path):
    """WiSE-FT: `average STUDENT TEACHER --weights 0.7 0.3` (either order) is 0.7 × the student's weights + 0.3 × the
    teacher's, still reads raw mixtures, keeps the shared backend and the teacher's space."""
    from safetensors.torch import load_file

    out = tmp_path / "wise"
    assert main(["average", str(teacher), str(student), "--weights", "0.3", "0.7", "--out", str(out)]) == 0
    t, s, m = (load_file(str(p / "model.safetensors")) for p in (teacher, student / "best", out))
    assert all(torch.allclose(m[k], 0.7 * s[k] + 0.3 * t[k], atol=1e-6) for k in s if s[k].is_floating_point())
    emb = ModelEmbedder.from_checkpoint(out, "cpu")
    assert emb.reads_mixtures and emb.space == ModelEmbedder.from_checkpoint(teacher, "cpu").space
    assert json.loads((out / "config.json").read_text())["distilled"]["teacher"] == str(teacher.resolve())


def _same(x, y) -> bool:
    return np.array_equal(x.mean, y.mean) and np.array_equal(x.transform, y.transform)


def test_average_refuses_what_does_not_average(student, tmp_path, caplog):
    """One checkpoint, another architecture or space, a weight per run missing: clear errors (CLI exit 2). Students
    whose backends differ average into a model without backend (and so without the teacher's space), with a warning."""
    import logging

    from singerid.models.average import average_checkpoints

    with pytest.raises(ValueError, match="at least 2"):
        average_checkpoints([student], tmp_path / "one")
    unrelated = tmp_path / "tiny"
    save_model(unrelated, create_model("tiny", seed=1))
    with pytest.raises(ValueError, match="different"):
        average_checkpoints([student, unrelated], tmp_path / "mixed")
    assert main(["average", str(student), str(unrelated), "--out", str(tmp_path / "mixed")]) == 2
    assert not (tmp_path / "mixed").exists()
    with pytest.raises(ValueError, match="one non-negative weight per checkpoint"):
        average_checkpoints([student, student], tmp_path / "w", weights=[1.0])
    other = _another_seed(student, tmp_path / "seed1")
    rng = np.random.default_rng(1)
    ScoringBackend.fit(rng.standard_normal((20, 8)).astype(np.float32), np.repeat(np.arange(4), 5),
                       BackendConfig(kind="center", asnorm_k=0)).save(other)
    with caplog.at_level(logging.WARNING, logger="singerid"):
        soup = average_checkpoints([student, other], tmp_path / "soup")
    assert "fit-scoring" in caplog.text and ScoringBackend.load(soup) is None
    meta = json.loads((soup / "config.json").read_text())
    assert meta["input"] == "mixture" and "embedding_space" not in meta
