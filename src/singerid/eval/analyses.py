"""The paper's analyses on experiment records: accuracy by genre (Fig. 2), by number of training tracks (Fig. 3), and
the similarity study (Fig. 4). Each writes JSON and a PNG; `write_report` gathers them into Markdown."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .cache import Windows
from .splits import SingerSplit

log = logging.getLogger(__name__)

BUCKETS = [("<5", 0, 4), ("5-9", 5, 9), ("10-19", 10, 19), (">=20", 20, 10**9)]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'singerid[plots]'") from e
    return plt


def by_group(records_by_run: list[list[dict]], key) -> dict[str, dict]:
    """Per group: top-1 and top-5 (%) per run, mean, and test-track count."""
    groups: dict[str, list[list[dict]]] = {}
    for run in records_by_run:
        per: dict[str, list[dict]] = {}
        for r in run:
            g = key(r)
            if g is not None:
                per.setdefault(g, []).append(r)
        for g, recs in per.items():
            groups.setdefault(g, []).append(recs)
    out = {}
    for g, runs in sorted(groups.items()):
        t1 = [100 * np.mean([r["rank"] == 0 for r in recs]) for recs in runs]
        t5 = [100 * np.mean([r["rank"] is not None and r["rank"] < 5 for r in recs]) for recs in runs]
        out[g] = {"top1_runs": t1, "top5_runs": t5, "top1_mean": float(np.mean(t1)), "top5_mean": float(np.mean(t5)),
                  "n_tracks": int(np.mean([len(r) for r in runs]))}
    return out


def same_vs_different(emb: np.ndarray, singers: list[str], songs: list[str]) -> tuple[float, float]:
    """Mean cosine of window pairs from the same singer (different songs) and from different singers."""
    sim = emb @ emb.T
    s, g = np.asarray(singers), np.asarray(songs)
    same = (s[:, None] == s[None]) & (g[:, None] != g[None])
    diff = s[:, None] != s[None]
    return float(sim[same].mean()), float(sim[diff].mean())


def bucket_of(n_train: int) -> str:
    return next(name for name, lo, hi in BUCKETS if lo <= n_train <= hi)


def plot_groups(stats: dict[str, dict], metric: str, title: str, out: Path, violin: bool = False) -> Path:
    plt = _pyplot()
    names = list(stats)
    data = [stats[g][f"{metric}_runs"] for g in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names) + 2), 3.5))
    if violin and all(len(d) > 1 for d in data):
        ax.violinplot(data, showmedians=True)
    ax.boxplot(data, widths=0.3)
    for i, d in enumerate(data, 1):
        ax.scatter(np.full(len(d), i), d, s=12, color="tab:orange", zorder=3)
    ax.set_xticks(range(1, len(names) + 1), [f"{g}\n(n={stats[g]['n_tracks']})" for g in names])
    ax.set_ylabel(f"{metric} accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def similarity_study(win: dict[str, Windows], splits: dict[str, SingerSplit], stems: dict[str, dict[str, str]],
                     seed: int = 0) -> dict[str, dict]:
    """Mean cosine between each test track's windows and: another singer's track (test/other), its validation track
    (test/val), its own vocal stem (test/vocal), its own instrumental stem (test/instru), its other windows (test/test).
    `stems[test_path]` = {"vocals": path, "accompaniment": path} where the table gives them."""
    rng = np.random.default_rng(seed)
    singers = sorted(splits)
    acc: dict[str, list[float]] = {k: [] for k in ("test/other", "test/val", "test/vocal", "test/instru", "test/test")}

    def mean_cos(a: np.ndarray, b: np.ndarray | None) -> float | None:
        return None if b is None or not len(b) else float((a @ b.T).mean())

    def emb(p: str | None) -> np.ndarray | None:
        w = win.get(p) if p else None
        return None if w is None or w.error else w.emb

    for s in singers:
        t = emb(splits[s].test)
        if t is None:
            continue
        other = singers[int(rng.integers(len(singers) - 1))] if len(singers) > 1 else None
        other = other if other != s else singers[-1]
        vals = {
            "test/other": mean_cos(t, emb(splits[other].train[0]) if other else None),
            "test/val": mean_cos(t, emb(splits[s].val)),
            "test/vocal": mean_cos(t, emb(stems.get(splits[s].test, {}).get("vocals"))),
            "test/instru": mean_cos(t, emb(stems.get(splits[s].test, {}).get("accompaniment"))),
            "test/test": float((t @ t.T)[~np.eye(len(t), dtype=bool)].mean()) if len(t) > 1 else None,
        }
        for k, v in vals.items():
            if v is not None:
                acc[k].append(v)
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in acc.items() if v}


def plot_similarity(sim: dict[str, dict], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = list(sim)
    ax.bar(names, [sim[k]["mean"] for k in names], yerr=[sim[k]["std"] for k in names], capsize=3,
           color=["tab:purple", "tab:red", "tab:green", "tab:orange", "tab:blue"][: len(names)])
    ax.set_ylabel("mean cosine similarity")
    ax.set_title("test-track windows vs ...")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(out_dir: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """Markdown report: (heading, body) sections."""
    md = [f"# {title}", "", "Indicative figures for research; singer identification is never a verdict.", ""]
    for head, body in sections:
        md += [f"## {head}", "", body, ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path


def table(stats: dict[str, dict], label: str) -> str:
    rows = [f"| {label} | tracks | top-1 % | top-5 % |", "|---|---:|---:|---:|"]
    rows += [f"| {g} | {v['n_tracks']} | {v['top1_mean']:.1f} | {v['top5_mean']:.1f} |" for g, v in stats.items()]
    return "\n".join(rows)


def save_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, default=float))


STEM_PAIRS = ("mix/vocal", "mix/instru", "mix/same", "mix/other", "mix/mix")


def stem_similarity(mix: dict[str, Windows], stems: dict[str, Windows], rows: list[dict], seed: int = 0) -> dict:
    """The paper's Fig. 4 over every mixture with its stems: mean all-pairs cosine of a mixture's windows with its own
    vocal stem's windows over the same spans (mix/vocal), its own instrumental's (mix/instru), another take of the
    same singer (mix/same: another song's mixture when there is one, else another take), another singer's mixture
    (mix/other), and its own other windows (mix/mix). `rows`: [{path, singer, song, vocals, accompaniment}]."""
    rng = np.random.default_rng(seed)
    ok = [r for r in rows if mix.get(r["path"]) is not None and mix[r["path"]].error is None and len(mix[r["path"]].emb)]
    acc: dict[str, list[float]] = {k: [] for k in STEM_PAIRS}

    def cos(a: np.ndarray, w: Windows | None) -> float | None:
        return None if w is None or w.error or not len(w.emb) else float((a @ w.emb.T).mean())

    for r in ok:
        e = mix[r["path"]].emb
        same = [o for o in ok if o["singer"] == r["singer"] and o["path"] != r["path"]]
        same = [o for o in same if o["song"] != r["song"]] or same
        other = [o for o in ok if o["singer"] != r["singer"]]
        vals = {"mix/vocal": cos(e, stems.get(r["vocals"])), "mix/instru": cos(e, stems.get(r["accompaniment"])),
                "mix/same": cos(e, mix[same[int(rng.integers(len(same)))]["path"]]) if same else None,
                "mix/other": cos(e, mix[other[int(rng.integers(len(other)))]["path"]]) if other else None,
                "mix/mix": float((e @ e.T)[~np.eye(len(e), dtype=bool)].mean()) if len(e) > 1 else None}
        for k, v in vals.items():
            if v is not None:
                acc[k].append(v)
    out = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in acc.items() if v}
    if "mix/vocal" in out and "mix/instru" in out:
        out["inverted"] = out["mix/instru"]["mean"] > out["mix/vocal"]["mean"]  # the paper's Mixture-model finding
    return out
