"""Ray path (local Ray cluster) equals the local path for embed and enroll."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=3, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synth_catalogue):
    from singerid.models import create_model, save_model

    root = tmp_path_factory.mktemp("ray")
    ckpt = str(save_model(root / "ck", create_model("tiny", seed=2)))
    t = pd.read_csv(synth_catalogue)
    t["path"] = [str(synth_catalogue.parent / p) for p in t["vocals_path"]]
    t = t.assign(stem="vocals", vocals_path="")[["path", "singer", "song", "stem"]].iloc[:12]
    t.loc[len(t)] = [str(root / "missing.flac"), "ghost", "x", "vocals"]  # an unreadable row is reported, not fatal
    t.to_csv(root / "t.csv", index=False)
    return root, ckpt, t


def test_ray_embed_equals_local(ray_cluster, setup):
    from singerid.data.manifest import load_tracks
    from singerid.distributed import ray_embed, read_shards
    from singerid.embed import ModelEmbedder, embed_tracks

    root, ckpt, _ = setup
    tracks = load_tracks(root / "t.csv")
    remote = read_shards(ray_embed(tracks, root / "shards", checkpoint=ckpt, actors=2, batch_size=4))
    local, errors = embed_tracks(ModelEmbedder.from_checkpoint(ckpt, "cpu"), tracks, workers=0, progress=False)
    assert len(errors) == 1 and (remote["error"] != "").sum() == 1
    remote = remote[remote["error"] == ""].sort_values(["path", "start"]).reset_index(drop=True)
    local = local.sort_values(["path", "start"]).reset_index(drop=True)
    assert list(remote["path"]) == list(local["path"]) and np.allclose(remote["start"], local["start"])
    np.testing.assert_allclose(np.stack(remote["embedding"]), np.stack(local["embedding"]), atol=1e-5)


def test_enroll_with_ray_equals_local(ray_cluster, setup):
    from singerid.catalogue import Catalogue
    from singerid.cli import main

    root, ckpt, _ = setup
    for name, extra in (("local", []), ("ray", ["--ray"])):
        assert main(["enroll", str(root / "t.csv"), "--catalogue", str(root / name), "--checkpoint", ckpt,
                     "--separate", "none", "--skip-bad", *extra]) == 0  # the table names a missing file
    a, b = Catalogue.open(root / "local"), Catalogue.open(root / "ray")
    assert a.store.count() == b.store.count() == 12
    def by_path(cat):
        ids, emb, _ = cat.store.track_embeddings()
        paths = dict(cat.store.db.execute("SELECT id, path FROM tracks"))
        return {paths[int(i)]: e for i, e in zip(ids, emb)}

    pa, pb = by_path(a), by_path(b)
    assert set(pa) == set(pb)
    for p in pa:
        np.testing.assert_allclose(pa[p], pb[p], atol=1e-5)
