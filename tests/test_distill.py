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
    TeacherBank,
    backend_map,
    cloned_files,
    distill_loss,
    draw_weights,
    instrumental_files,
    load_teacher,
    mean_voice,
    more_vocal_files,
    neighbour_loss,
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


def test_a_layered_accompaniment_is_two_instrumentals_the_second_under_the_first(synth_catalogue, tmp_path):
    """--distill-layered: with share 1 every accompaniment holds both instrumentals (two tones here), the second
    0-12 dB under the first; with share 0 the batches are exactly those of a run without the option."""
    import soundfile as sf

    vocals, _ = _pool(synth_catalogue)
    insts = []
    for hz in (440, 660):
        f = tmp_path / f"tone{hz}.wav"
        sf.write(f, 0.5 * np.sin(2 * np.pi * hz * np.arange(10 * 16000) / 16000), 16000)
        insts.append((str(f), 10.0))
    freqs = np.fft.rfftfreq(32000, 1 / 16000)

    def batch(layered):
        return DistillBatches(vocals, insts, batch=8, seed=0, steps=1, seconds=2.0, layered=layered)[0]

    spec = np.abs(np.fft.rfft(batch(1.0)["accompaniment"].numpy(), axis=1))
    level = {hz: spec[:, np.argmin(np.abs(freqs - hz))] for hz in (440, 660)}
    loud, soft = np.maximum(level[440], level[660]), np.minimum(level[440], level[660])
    gap_db = 20 * np.log10(loud / soft)
    assert np.all(gap_db >= -0.1) and np.all(gap_db <= 12.1) and gap_db.std() > 1  # both present, drawn gaps
    plain = np.abs(np.fft.rfft(batch(0.0)["accompaniment"].numpy(), axis=1))
    assert np.all(np.minimum(plain[:, 880], plain[:, 1320]) < 1e-3 * np.maximum(plain[:, 880], plain[:, 1320]))
    off, default = batch(0.0), DistillBatches(vocals, insts, batch=8, seed=0, steps=1, seconds=2.0)[0]
    for k in ("mixture", "vocal", "accompaniment", "vda"):
        assert torch.equal(off[k], default[k])


def test_a_real_share_splits_the_draws_between_real_voices_and_clones():
    """--distill-real: real stems get that share of the draws and clones the rest, each file in proportion to its
    length within its kind; unset, every file in proportion to its length, the batches as before."""
    vocals = [("/a/real1.flac", "A", 10.0), ("/a/real2.flac", "A", 30.0), ("/a/clone.flac", "A", 60.0)]
    table = pd.DataFrame({"path": [p for p, _, _ in vocals], "stem": "vocals", "vocals_path": "",
                          "kind": ["real", "real", "cloned"]})
    cloned = cloned_files(table)
    assert cloned == {"/a/clone.flac"}
    assert np.allclose(draw_weights(vocals), [0.1, 0.3, 0.6])
    assert np.allclose(draw_weights(vocals, 0.5, cloned), [0.125, 0.375, 0.5])
    assert np.allclose(draw_weights(vocals, 1.0, cloned), [0.25, 0.75, 0.0])

    def drawn(**kw):
        return [p for step in range(50) for p, _, _ in DistillBatches(vocals, [], 8, 0, 50, 2.0, **kw).plan(step)]

    assert "/a/clone.flac" not in drawn(real=1.0, cloned=cloned)
    assert drawn() == drawn(cloned=cloned)  # no share asked: the draws do not change
    with pytest.raises(ValueError, match="cloned vocal stems, and the pool has none"):
        draw_weights(vocals, 0.5, set())
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        draw_weights(vocals, 1.5, cloned)


def test_vocal_stretch_gives_teacher_and_student_the_same_new_voice(synth_catalogue, tmp_path):
    """--distill-vocal-stretch: the vocal window is resampled by the drawn factor (a 220-Hz voice comes out at
    220 × f), and the teacher's clean vocal and the student's mixture carry that same voice; with same-singer pairs
    it is refused."""
    import soundfile as sf

    _, insts = _pool(synth_catalogue)
    voice = tmp_path / "voice.wav"
    sf.write(voice, 0.5 * np.sin(2 * np.pi * 220 * np.arange(10 * 16000) / 16000), 16000)
    vocals = [(str(voice), "S", 10.0)]
    freqs = np.fft.rfftfreq(32000, 1 / 16000)

    def batch(vocal_stretch):
        return DistillBatches(vocals, insts, batch=4, seed=0, steps=1, seconds=2.0, clean=0.0,
                              vocal_stretch=vocal_stretch)[0]

    plain, fixed, drawn = batch(None), batch((1.5, 1.5)), batch((0.8, 1.25))
    peak = lambda x: freqs[np.abs(np.fft.rfft(x.numpy(), axis=1)).argmax(axis=1)]  # noqa: E731
    np.testing.assert_allclose(peak(plain["vocal"]), 220, atol=1)
    np.testing.assert_allclose(peak(fixed["vocal"]), 330, atol=1)
    hz = peak(drawn["vocal"])
    assert hz.min() >= 0.8 * 220 - 1 and hz.max() <= 1.25 * 220 + 1 and hz.std() > 3
    for b in (fixed, drawn):  # the student's mixture holds the teacher's (stretched) vocal, plus its accompaniment
        own = b["mixture"] - b["accompaniment"]
        cos = (own * b["vocal"]).sum(1) / (own.norm(dim=1) * b["vocal"].norm(dim=1))
        assert torch.all(cos > 0.999)
    with pytest.raises(ValueError, match="same-singer pairs"):
        DistillBatches(vocals, insts, batch=4, seed=0, steps=1, seconds=2.0, pairs=object(), vocal_stretch=(0.9, 1.1))


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


def test_more_vocals_from_tables_and_folders_join_the_tables_once(synth_catalogue, tmp_path):
    """`--distill-vocals` (a folder of separated vocals without labels, a table): pooled with the training table's
    stems, each file once, unreadable files skipped; a source with no vocal stem is refused."""
    known = vocal_files(load_tracks(synth_catalogue))
    folder = tmp_path / "sep"
    folder.mkdir()
    for p, _, _ in known[:2]:  # already in the table (through a link): not drawn twice
        (folder / Path(p).name).symlink_to(p)
    (folder / "new_vocals.flac").write_bytes(Path(known[2][0]).read_bytes())  # a new file
    (folder / "broken.wav").write_bytes(b"RIFF")
    table = tmp_path / "more.csv"
    pd.DataFrame({"path": [known[3][0]], "singer": ["x"], "stem": ["vocals"]}).to_csv(table, index=False)
    pooled = more_vocal_files((str(folder), str(table)), known)
    assert pooled[: len(known)] == known
    new = pooled[len(known):]
    assert [Path(p).name for p, _, _ in new] == ["new_vocals.flac"] and new[0][1] == "" and new[0][2] > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable vocal stem"):
        more_vocal_files((str(empty),), known)


def test_a_digitally_silent_stretch_of_a_vocal_stem_is_a_quiet_draw(synth_catalogue, tmp_path):
    """Separated vocals hold exact zeros between phrases: such a window is a silent draw (redrawn, else zeros), not an
    error that stops the run; other bad audio still raises."""
    import soundfile as sf

    from singerid.audio import AudioError

    vocals, insts = _pool(synth_catalogue)
    gap = tmp_path / "gap.flac"
    sf.write(gap, np.concatenate([np.zeros(16000 * 4), 0.3 * np.sin(np.arange(16000 * 3) / 5.0)]), 16000)
    ds = DistillBatches([(str(gap), "", 7.0)], insts, batch=2, seed=0, steps=1, seconds=3.2)
    rng = np.random.default_rng(0)
    assert not ds._window(str(gap), 7.0, rng, segs=[0.0]).any()  # only the silent start to draw from
    assert np.abs(ds._window(str(gap), 7.0, rng, segs=[0.0, 3.8])).max() > 0.1  # a redraw finds the voice
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioError):
        ds._window(str(bad), 7.0, rng)


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
        res = step_loss(s_model, t_model, batch, cfg, gap)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["loss"].detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_neighbour_term_ranks_other_voices_as_the_teacher_does(synth_catalogue, teacher):
    """The bank is a FIFO of the teacher's voiced units; the KL is zero for a student that reads as the teacher does,
    positive otherwise; step_loss adds it once the bank holds TeacherBank.MIN_FILL units, and Adam steps lower it."""
    g = torch.Generator().manual_seed(0)
    bank = TeacherBank(300)
    bank.push(torch.randn(200, 16, generator=g))
    last = torch.randn(200, 16, generator=g)
    bank.push(last)
    assert len(bank) == 300 and torch.allclose(bank.units[-200:], torch.nn.functional.normalize(last, dim=-1))
    t = torch.randn(10, 16, generator=g)
    assert float(neighbour_loss(t, t, bank.units)) < 1e-6
    assert float(neighbour_loss(torch.randn(10, 16, generator=g), t, bank.units)) > 0.1

    vocals, insts = _pool(synth_catalogue)
    cfg = resolve(TrainConfig(manifest=str(synth_catalogue), out="unused", mode="distill", model="tiny",
                              teacher=str(teacher), distill_bank=400, distill_nce=0.0))
    t_model, _, _ = load_teacher(str(teacher))
    s_model = copy.deepcopy(t_model).requires_grad_(True).train()
    ds = DistillBatches(vocals, insts, batch=8, seed=0, steps=2, seconds=6.0, vda_db=(-6.0, -6.0))
    bank = TeacherBank(cfg.distill_bank)
    assert "neighbour_loss" not in step_loss(s_model, t_model, ds[1], cfg, bank=bank)  # too few units yet
    bank.push(torch.randn(TeacherBank.MIN_FILL, bank.units.shape[1], generator=g))
    filled = len(bank)
    opt = torch.optim.Adam(s_model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        res = step_loss(s_model, t_model, ds[0], cfg, bank=bank)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["neighbour_loss"].detach()))
    assert filled < len(bank) <= 400  # each step's teacher units joined it, the oldest leave past its size
    assert losses[0] > 0 and losses[-1] < losses[0], losses


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


def test_a_student_with_a_weight_average_saves_it_and_resumes_from_its_live_weights(synth_catalogue, teacher,
                                                                                    tmp_path):
    from safetensors.torch import load_file

    from singerid.train.recipe import WeightAverage

    common = dict(manifest=str(synth_catalogue), mode="distill", model="tiny", teacher=str(teacher), batch_pairs=4,
                  lr=1e-3, epoch_steps=3, val_steps=1, num_workers=0, device="cpu", seed=0, ema=0.5, scoring="none",
                  instrumentals=str(_instrumentals(synth_catalogue, tmp_path)))
    full = train(TrainConfig(out=str(tmp_path / "full"), max_steps=6, **common))
    part = train(TrainConfig(out=str(tmp_path / "part"), max_steps=3, **common))
    ckpt = part / "checkpoints" / "step_00000003"
    saved, live = load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / WeightAverage.LIVE))
    assert any(not torch.equal(saved[k], live[k]) for k in saved)  # the student saved is the average
    train(TrainConfig(out=str(part), max_steps=6, resume=True, **common))

    def log(run: Path) -> dict[tuple[int, str], float]:
        with open(run / "log.csv") as fh:
            return {(int(r["step"]), r["split"]): float(r["loss"]) for r in csv.DictReader(fh)}

    a, b = log(full), log(part)
    assert sorted(b) == sorted(a)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    assert json.loads((full / "best" / "config.json").read_text())["distilled"]["ema"] == 0.5


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


def test_evaluate_enrols_with_the_teacher_and_queries_with_the_student(synth_catalogue, student, teacher, tmp_path):
    """The protocol of a teacher-enrolled catalogue answered by its student: the queries are embedded by the student
    (recorded in the result), and a model of another embedding space is refused."""
    from singerid.eval.evaluate import evaluate

    enrol, query = _tracks(synth_catalogue, [0, 1, 2]), _tracks(synth_catalogue, [3])
    t_emb, s_emb = (ModelEmbedder.from_checkpoint(p, "cpu") for p in (teacher, student))
    mixed = evaluate(enrol, query, t_emb, workers=0, query_embedder=s_emb)
    alone = evaluate(enrol, query, t_emb, workers=0)
    assert mixed["n"] == alone["n"] == len(query) and mixed["query_backend"] == s_emb.name != alone["query_backend"]
    assert [q["predicted"] for q in mixed["queries"]] != [q["predicted"] for q in alone["queries"]]  # scores differ
    unrelated = tmp_path / "other"
    save_model(unrelated, create_model("tiny", seed=1))
    with pytest.raises(ValueError, match="embedding space"):
        evaluate(enrol, query, t_emb, workers=0, query_embedder=ModelEmbedder.from_checkpoint(unrelated, "cpu"))
    # the same through the CLI
    enrol.to_csv(tmp_path / "enrol.csv", index=False)
    query.to_csv(tmp_path / "query.csv", index=False)
    args = ["evaluate", "--enroll", str(tmp_path / "enrol.csv"), "--query", str(tmp_path / "query.csv"),
            "--checkpoint", str(teacher), "--separate", "none", "--workers", "0", "--json", str(tmp_path / "r.json")]
    assert main(args + ["--query-checkpoint", str(student)]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["query_backend"] == s_emb.name
    assert main(args + ["--query-checkpoint", str(unrelated)]) == 2


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
    import singerid.embed
    import singerid.separation

    asked = []
    monkeypatch.setattr(singerid.separation, "load_separator", lambda *a, **k: pytest.fail("separator loaded"))
    monkeypatch.setattr(singerid.embed, "second_view", lambda emb, views, separate, *a: asked.append((views, separate)))
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


def test_a_separated_target_has_the_teacher_read_each_mixture_through_spleeter(synth_catalogue, teacher, tmp_path,
                                                                               monkeypatch):
    """`--distill-target separated`: every training step's mixtures go through the real spleeter and the teacher is
    taught from its vocals, not from the clean stems; the checkpoint says so."""
    try:
        locate("spleeter")
    except WeightsMissing:
        pytest.skip("spleeter weights not fetched")
    from singerid.separation.base import Separator

    seen, real = [], Separator.vocals_batch

    def spy(self, waves):
        out = real(self, waves)
        seen.append((waves.copy(), out))
        return out

    monkeypatch.setattr(Separator, "vocals_batch", spy)
    insts = _instrumentals(synth_catalogue, tmp_path)
    out = train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "run"), mode="distill", model="tiny",
                            teacher=str(teacher), batch_pairs=2, epoch_steps=2, val_steps=1, max_epochs=1,
                            num_workers=0, device="cpu", instrumentals=str(insts), val_instrumentals=2,
                            distill_target="separated"))
    assert len(seen) == 2  # one call per training step, none for validation
    for mixture, vocals in seen:
        assert vocals.shape == mixture.shape == (4, 6 * 16000)
        assert np.abs(vocals - mixture).max() > 1e-3  # spleeter changed what the teacher reads
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["distilled"]["target"] == "separated" and meta["training"]["distill_target"] == "separated"
    with pytest.raises(ValueError, match="--distill-target"):
        train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "b"), mode="distill", model="tiny",
                          teacher=str(teacher), distill_target="demucs", instrumentals=str(insts)))


def test_the_teacher_reads_the_given_input_instead_of_the_clean_vocal(synth_catalogue, teacher):
    vocals, insts = _pool(synth_catalogue)
    cfg = resolve(TrainConfig(manifest=str(synth_catalogue), out="unused", mode="distill", model="tiny",
                              teacher=str(teacher), distill_nce=0.0))
    t_model, _, _ = load_teacher(str(teacher))
    batch = DistillBatches(vocals, insts, batch=4, seed=0, steps=1, seconds=6.0, clean=0.0)[0]
    with torch.no_grad():
        same = step_loss(t_model, t_model, {**batch, "mixture": batch["vocal"]}, cfg)
        given = step_loss(t_model, t_model, {**batch, "teacher_input": batch["mixture"]}, cfg)
    assert float(same["distill_loss"]) < 1e-5  # the clean vocal on both sides: nothing to learn
    assert float(given["distill_loss"]) < 1e-5  # the teacher read the mixture, as the student did
    assert float(step_loss(t_model, t_model, batch, cfg)["distill_loss"]) > 1e-3


def test_distillation_in_the_backend_space_ignores_what_the_backend_discards(synth_catalogue, teacher, tmp_path):
    """`--distill-space backend`: voiced units are compared after the teacher's backend, so a student unit that differs
    from its teacher's only along a direction the backend drops costs nothing there (and does in the embedding space);
    units without voice are still taught the mean voice in the embedding space. A teacher without a backend is refused."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    backend = ScoringBackend(mean=np.zeros(8), transform=np.eye(8)[:, :6], info={})  # drops dimensions 6 and 7
    project = backend_map(backend)
    t = torch.nn.functional.normalize(torch.from_numpy(x[:12]).reshape(3, 4, 8), dim=-1)
    s = t.clone()
    s[..., 6:] += 5.0  # moved only where the backend does not look
    active = torch.tensor([[True, True, True, False]] * 3)
    gap = torch.nn.functional.normalize(torch.ones(8), dim=0)
    plain = distill_loss(s, t, active, "cosine", gap)["distill_loss"]
    scored = distill_loss(s, t, active, "cosine", gap, project)["distill_loss"]
    gaps_only = distill_loss(s, torch.where(active[..., None], s, t), active, "cosine", gap)["distill_loss"]
    assert float(scored) == pytest.approx(float(gaps_only), abs=1e-6)  # voiced units cost nothing after the backend
    assert float(plain) > float(scored) + 0.1
    insts = _instrumentals(synth_catalogue, tmp_path)
    common = dict(manifest=str(synth_catalogue), mode="distill", model="tiny", batch_pairs=4, epoch_steps=2,
                  val_steps=1, max_epochs=1, num_workers=0, device="cpu", instrumentals=str(insts),
                  val_instrumentals=2, distill_space="backend")
    out = train(TrainConfig(out=str(tmp_path / "run"), teacher=str(teacher), **common))
    assert json.loads((out / "best" / "config.json").read_text())["distilled"]["space"] == "backend"
    bare = tmp_path / "bare"
    save_model(bare, create_model("tiny", seed=0))
    with pytest.raises(ValueError, match="no scoring backend"):
        train(TrainConfig(out=str(tmp_path / "b"), teacher=str(bare), **common))


def test_a_pre_net_starts_as_the_identity_trains_and_is_rebuilt_from_the_checkpoint(synth_catalogue, tmp_path):
    """`--distill-prenet`: a gate per mel band and frame in front of a GE2E student's LSTM; the student with it
    embeds exactly as its teacher before training, the gate learns, and the checkpoint rebuilds it."""
    from singerid.models import get_config, load_model
    from singerid.train.distill_run import add_prenet

    cfg = get_config("voice")
    cfg.pretrained = None  # random GE2E weights: no fetched wheel needed
    teacher = create_model(cfg, seed=0).eval()
    save_model(tmp_path / "teacher", teacher, {"note": "test GE2E teacher"})
    same = copy.deepcopy(teacher)
    add_prenet(same, 8)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32) * 0.1)
    with torch.no_grad():
        assert torch.equal(same.encode(wave), teacher.encode(wave))
    with pytest.raises(ValueError, match="already has a pre-net"):
        add_prenet(same, 8)
    with pytest.raises(ValueError, match="GE2E"):
        add_prenet(create_model("tiny", seed=0), 8)

    out = tmp_path / "run"
    insts = _instrumentals(synth_catalogue, tmp_path)
    train(TrainConfig(manifest=str(synth_catalogue), out=str(out), mode="distill", model="voice",
                      teacher=str(tmp_path / "teacher"), batch_pairs=4, lr=1e-3, encoder_lr=1e-3, epoch_steps=3,
                      val_steps=1, max_epochs=1, num_workers=0, device="cpu", seed=0, seconds=3.2,
                      instrumentals=str(insts), distill_prenet=8, scoring="none"))
    student = load_model(out / "checkpoints" / "step_00000003")
    assert student.cfg.encoder["prenet"] == 8
    gate = student.encoder.prenet.out
    assert float(gate.weight.detach().abs().max()) > 0  # the gate left the identity
    with torch.no_grad():
        assert not torch.equal(student.encode(wave), teacher.encode(wave))


@pytest.mark.parametrize("widen", [{"input": "stft"}, {"fine": 1024}], ids=["stft", "fine"])
def test_a_student_that_sees_more_than_the_mel_starts_as_its_teacher_learns_and_is_rebuilt(
        widen, synth_catalogue, tmp_path):
    """`--distill-input stft` (the LSTM reads the 201-bin STFT power; its first layer is the teacher's mapped through
    the mel filterbank) and `--distill-fine 1024` (beside the mel, a 64-ms STFT up to 4 kHz, zero-initialised
    weights): before training the student embeds as its teacher (to float rounding); the new input weights learn;
    the checkpoint rebuilds the wider encoder; a mel gate with the STFT input is refused."""
    from singerid.models import get_config, load_model
    from singerid.models.ge2e import N_FFT, N_MELS, fine_bins, input_state
    from singerid.train.distill_run import add_prenet, widen_input

    cfg = get_config("voice")
    cfg.pretrained = None
    teacher = create_model(cfg, seed=0).eval()
    save_model(tmp_path / "teacher", teacher, {"note": "test GE2E teacher"})
    wide = copy.deepcopy(teacher)
    widen_input(wide, **widen)
    width = (N_FFT // 2 + 1 if widen.get("input") == "stft" else N_MELS) + fine_bins(widen.get("fine", 0))
    assert wide.encoder.lstm.input_size == width and teacher.encoder.lstm.input_size == N_MELS
    assert {k: wide.cfg.encoder[k] for k in widen} == widen
    wave = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 40000)).astype(np.float32) * 0.1)
    with torch.no_grad():
        torch.testing.assert_close(wide.encode(wave), teacher.encode(wave), atol=1e-5, rtol=1e-4)
    rebuilt = create_model(wide.cfg)
    rebuilt.encoder.load_state_dict(input_state(teacher.encoder.state_dict(), **widen))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode(wave), teacher.encode(wave), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="input must be mel or stft"):
        create_model({**wide.cfg.to_dict(), "encoder": {**wide.cfg.encoder, "input": "cqt"}})
    gated = copy.deepcopy(teacher)
    add_prenet(gated, 8)
    with pytest.raises(ValueError, match="one or the other"):
        widen_input(gated, input="stft")

    out = tmp_path / "run"
    train(TrainConfig(manifest=str(synth_catalogue), out=str(out), mode="distill", model="voice",
                      teacher=str(tmp_path / "teacher"), batch_pairs=4, lr=1e-3, encoder_lr=1e-3, epoch_steps=3,
                      val_steps=1, max_epochs=1, num_workers=0, device="cpu", seed=0, seconds=3.2,
                      instrumentals=str(_instrumentals(synth_catalogue, tmp_path)),
                      distill_input=widen.get("input", "mel"), distill_fine=widen.get("fine", 0), scoring="none"))
    student = load_model(out / "checkpoints" / "step_00000003")
    assert {k: student.cfg.encoder[k] for k in widen} == widen
    moved = (student.encoder.lstm.weight_ih_l0 - wide.encoder.lstm.weight_ih_l0).detach()
    assert float(moved[:, N_MELS:].abs().max()) > 0  # the weights of what the teacher never saw learned
    meta = json.loads((out / "checkpoints" / "step_00000003" / "config.json").read_text())
    assert (meta["distilled"]["input"], meta["distilled"]["fine"]) == (widen.get("input", "mel"), widen.get("fine", 0))


def test_the_pretrained_voice_encoder_reading_more_than_the_mel_embeds_as_the_40_band_one():
    """`voice` with `input: stft` and a fine view: the wheel's 40-band weights are converted on loading, same
    embeddings."""
    try:
        locate("voice")
    except WeightsMissing:
        pytest.skip("voice weights not fetched (singerid fetch-weights)")
    from singerid.models import get_config

    cfg = get_config("voice")
    cfg.encoder = {**cfg.encoder, "input": "stft", "fine": 1024}
    wave = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 32000)).astype(np.float32) * 0.1)
    with torch.no_grad():
        torch.testing.assert_close(create_model(cfg).encode(wave), create_model("voice").encode(wave),
                                   atol=1e-5, rtol=1e-4)


def test_the_frame_term_teaches_every_frame_of_the_voiced_units(synth_catalogue, tmp_path):
    """`--distill-frames`: the top LSTM layer's output at each of a voiced unit's 160 frames, student on the mixture
    against teacher on the clean vocal; zero for identical frames, only the voiced units counted, Adam steps lower
    it; an encoder without frames (AST) is refused."""
    from singerid.models import get_config
    from singerid.train.distill import frame_loss, units

    cfg = get_config("voice")
    cfg.pretrained = None  # random GE2E weights: no fetched wheel needed
    t_model = create_model(cfg, seed=0).eval()
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 51200)).astype(np.float32) * 0.1)
    with torch.no_grad():
        emb, raw, seq = units(t_model, wave, frames=True)
        assert seq.shape[:3] == (2, emb.shape[1], 160) and torch.allclose(emb, units(t_model, wave)[0])
    active = torch.zeros(emb.shape[:2], dtype=torch.bool)
    assert float(frame_loss(seq, seq, active | True)) < 1e-6
    other = seq.clone()
    other[1] = -other[1]  # only window 1 differs: invisible while its units are silent
    active[0] = True
    assert float(frame_loss(other, seq, active)) < 1e-6
    assert float(frame_loss(other, seq, active | True)) > 0.5
    with pytest.raises(ValueError, match="GE2E"):
        units(create_model("tiny", seed=0), wave, frames=True)

    save_model(tmp_path / "teacher", t_model, {"note": "test GE2E teacher"})
    t_model, _, _ = load_teacher(str(tmp_path / "teacher"))
    s_model = copy.deepcopy(t_model).requires_grad_(True).train()
    vocals, insts = _pool(synth_catalogue)
    tcfg = resolve(TrainConfig(manifest=str(synth_catalogue), out="unused", mode="distill", model="voice",
                               teacher=str(tmp_path / "teacher"), distill_frames=1.0, distill_nce=0.0))
    batch = DistillBatches(vocals, insts, batch=4, seed=0, steps=1, seconds=3.2, vda_db=(-6.0, -6.0))[0]
    opt = torch.optim.Adam(s_model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        res = step_loss(s_model, t_model, batch, tcfg)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["frame_loss"].detach()))
    assert losses[0] > 0 and losses[-1] < losses[0], losses


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

    from singerid.models.checkpoint import average_checkpoints

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

    from singerid.models.checkpoint import average_checkpoints

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
