"""Pair sampler, tiny training run, kill-and-resume, DDP under torchrun, train/embed commands."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singerid.cli import main
from singerid.data.manifest import load_tracks
from singerid.data.pairs import PairBatches, build_sources
from singerid.embed import ModelEmbedder, embed_tracks, read_embeddings
from singerid.eval.analyses import same_vs_different
from singerid.train.loop import TrainConfig, train


def _losses(run: Path, split: str = "train") -> dict[int, float]:
    with open(run / "log.csv") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == split}


@pytest.mark.parametrize("mode", ["mixture", "vocal", "hybrid"])
def test_pair_sampler_pairs_different_songs_and_honours_mode(synth_catalogue, mode):
    sources = build_sources(load_tracks(synth_catalogue), mode)
    ds = PairBatches(sources, list(sources), mode, batch_pairs=4, seed=0, steps=50)
    kinds = set()
    for step in range(50):
        plan = ds.plan(step)
        assert len({s for s, _, _ in plan}) == 4  # distinct singers
        for singer, a, b in plan:
            song = lambda src: Path(src.path).name.rsplit("_", 1)[0]
            assert song(a) != song(b), "a song paired with itself"
            assert song(a).startswith(singer) and song(b).startswith(singer)
            for src in (a, b):
                kinds.add("vocal" if src.path.endswith("_vocals.flac") else "mixture")
    assert kinds == {"mixture": {"mixture"}, "vocal": {"vocal"}, "hybrid": {"mixture", "vocal"}}[mode]
    assert ds.plan(7) == PairBatches(sources, list(sources), mode, 4, 0, 50).plan(7)  # seeded
    waves, names = ds[3]
    assert waves.shape == (8, 96000) and names[0] == names[1]
    assert float(waves.abs().max()) == pytest.approx(1.0, abs=1e-5)  # peak-normalised


def test_sampler_shards_the_global_batch_across_ranks(synth_catalogue):
    sources = build_sources(load_tracks(synth_catalogue), "vocal")
    full = PairBatches(sources, list(sources), "vocal", 6, 0, 10)
    parts = [PairBatches(sources, list(sources), "vocal", 6, 0, 10, rank=r, world=2) for r in range(2)]
    names = [parts[r][2][1] for r in range(2)]
    assert sorted(names[0] + names[1]) == sorted(full[2][1])
    assert not set(names[0]) & set(names[1])


def test_tiny_training_learns_singers(synth_catalogue, tmp_path):
    cfg = TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "run"), mode="vocal", model="tiny",
                      max_steps=150, batch_pairs=6, epoch_steps=50, val_steps=2, num_workers=0, seed=0)
    run = train(cfg)
    losses = list(_losses(run).values())
    assert len(losses) == 150
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])
    tracks = load_tracks(synth_catalogue)
    df, errors = embed_tracks(ModelEmbedder.from_checkpoint(run, "cpu"), tracks, "vocals_path", workers=0, progress=False)
    assert not errors
    same, diff = same_vs_different(np.stack(df["embedding"]), list(df["singer"]), list(df["song"]))
    assert same - diff > 0.05, (same, diff)
    assert (run / "best" / "model.safetensors").is_file() and (run / "latest.json").is_file()


def test_kill_and_resume_reproduces_the_uninterrupted_run(synth_catalogue, tmp_path):
    common = dict(manifest=str(synth_catalogue), mode="hybrid", model="tiny", batch_pairs=4, epoch_steps=4,
                  val_steps=1, num_workers=1, seed=5)
    full = train(TrainConfig(out=str(tmp_path / "full"), max_steps=10, **common))
    # a run that stops at step 6 (mid-epoch checkpoint), then resumes to 10
    part = train(TrainConfig(out=str(tmp_path / "part"), max_steps=6, **common))
    with pytest.raises(FileExistsError):
        train(TrainConfig(out=str(part), max_steps=10, **common))
    train(TrainConfig(out=str(part), max_steps=10, resume=True, **common))
    a, b = _losses(full), _losses(part)
    assert sorted(b) == list(range(1, 11))  # no duplicated or missing steps in the log
    for step in range(7, 11):
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step
    assert _losses(part, "val") == pytest.approx(_losses(full, "val"), rel=1e-4)
    assert json.loads((part / "latest.json").read_text())["step"] == 10


def test_cosine_schedule_anneals_every_group_to_zero_and_survives_a_resume(synth_catalogue, tmp_path):
    import torch

    from singerid.train.recipe import lr_scheduler, scheduler_step
    from singerid.train.state import load_train_state, train_state_writer

    run = train(TrainConfig(manifest=str(synth_catalogue), out=str(tmp_path / "run"), mode="vocal", model="tiny",
                            batch_pairs=4, epoch_steps=4, val_steps=1, num_workers=0, max_steps=8, lr=1e-3,
                            lr_schedule="cosine"))
    with open(run / "log.csv") as fh:
        lr = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(fh) if r["split"] == "train"}
    assert list(lr) == list(range(1, 9))
    assert lr[4] == pytest.approx(0.5e-3) and lr[8] == pytest.approx(0.0, abs=1e-12)  # the rate after each step
    assert all(lr[s + 1] < lr[s] for s in range(1, 8))

    def optimizer():
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 1e-4}], lr=1e-3)
        cfg = TrainConfig(manifest="", out="", lr_schedule="cosine")
        return opt, lr_scheduler(opt, cfg, total_steps=10)

    opt, sched = optimizer()
    for _ in range(3):
        opt.step()
        scheduler_step(sched)
        scheduler_step(sched, val_score=1.0)  # epoch ends leave a per-step schedule alone
    for name, write in train_state_writer(opt, sched, {"step": 3}).items():
        write(tmp_path / name)
    opt2, sched2 = optimizer()
    assert load_train_state(tmp_path, opt2, sched2)["step"] == 3
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
    assert sched.get_last_lr()[1] == pytest.approx(1e-4 * 0.5 * (1 + np.cos(np.pi * 3 / 10)))
    with pytest.raises(ValueError, match="schedule"):
        lr_scheduler(opt, TrainConfig(manifest="", out="", lr_schedule="linear"), 10)


def test_resume_after_kill_9_mid_run(synth_catalogue, tmp_path):
    """A real SIGKILL during training: the newest checkpoint stays loadable and the run continues from it."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "singerid.cli", "train", "--manifest", str(synth_catalogue), "--mode", "vocal",
           "--out", str(out), "--batch-pairs", "4", "--epoch-steps", "3", "--val-steps", "1", "--workers", "0",
           "--max-steps", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if (out / "latest.json").exists() and json.loads((out / "latest.json").read_text())["step"] >= 6:
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.1)
        proc.kill()
    finally:
        proc.wait()
    step = json.loads((out / "latest.json").read_text())["step"]
    assert step >= 6
    assert main(["train", "--manifest", str(synth_catalogue), "--mode", "vocal", "--out", str(out), "--resume",
                 "--batch-pairs", "4", "--epoch-steps", "3", "--val-steps", "1", "--workers", "0",
                 "--max-steps", str(step + 3)]) == 0
    assert max(_losses(out)) == step + 3


def test_train_and_embed_commands(synth_catalogue, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(synth_catalogue), "--mode", "mixture", "--config", "tiny", "--out", str(run),
                 "--max-steps", "3", "--batch-pairs", "3", "--workers", "0"]) == 0
    out = tmp_path / "w.parquet"
    assert main(["embed", "--checkpoint", str(run), "--manifest", str(synth_catalogue), "--out", str(out)]) == 0
    meta, emb = read_embeddings(out)
    assert emb.shape == (24, 256) and list(meta.columns) == ["path", "singer", "song", "start"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert "24 windows from 24 tracks" in capsys.readouterr().out


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(synth_catalogue, tmp_path):
    """torchrun with 2 CPU ranks (gloo): same global batch sharded, gathered loss, rank-0 checkpoints."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "singerid.cli", "train", "--manifest", str(synth_catalogue), "--mode", "vocal", "--out", str(out),
           "--max-steps", "4", "--batch-pairs", "4", "--epoch-steps", "2", "--val-steps", "1", "--workers", "0",
           "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(_losses(out)) == [1, 2, 3, 4]
    assert json.loads((out / "latest.json").read_text())["step"] == 4
    ModelEmbedder.from_checkpoint(out, "cpu")  # loads


def test_mixtures_made_on_the_fly_from_stems_and_instrumentals(synth_catalogue, tmp_path):
    t = pd.read_csv(synth_catalogue)
    base = synth_catalogue.parent
    vocals = pd.DataFrame({"path": [str(base / p) for p in t["vocals_path"]], "singer": t["singer"], "song": t["song"],
                           "stem": "vocals"})
    insts = pd.DataFrame({"path": [str(base / p) for p in t["accompaniment_path"][:4]], "singer": "", "song": "i",
                          "stem": "instrumental"})
    table = tmp_path / "t.csv"
    pd.concat([vocals, insts]).to_csv(table, index=False)
    tracks = load_tracks(table)
    with pytest.raises(ValueError, match="at least 2 singers"):
        PairBatches(build_sources(tracks, "mixture"), [], "mixture", 4, 0, 5)  # no mixtures without mixing
    sources = build_sources(tracks, "mixture", mix_instrumentals=True)
    ds = PairBatches(sources, list(sources), "mixture", 4, 0, 5)
    for _, a, b in ds.plan(0):
        assert a.mix_onto and b.mix_onto and a.path.endswith("_vocals.flac")
    mixed, _ = ds[1]
    plain, _ = PairBatches(build_sources(tracks, "vocal"), list(sources), "vocal", 4, 0, 5)[1]
    assert mixed.shape == plain.shape and not np.allclose(mixed.numpy(), plain.numpy(), atol=1e-3)
    assert main(["train", "--manifest", str(table), "--mode", "hybrid", "--mix-instrumentals", "--out",
                 str(tmp_path / "run"), "--max-steps", "2", "--batch-pairs", "3", "--workers", "0"]) == 0
