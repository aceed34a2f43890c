"""A minute-long window-level proxy of separation-free identification (a fold run of dev_folds.py takes an hour).

Vocal windows (3.2 s) of held-out singers (real and cloned stems) are mixed onto the dev instrumentals (which training
never uses: P3 mixes with them) at −6…+12 dB, as `singerid train --mode distill` mixes; for each system, the mean
cosine of its embedding of the mixture window to the teacher's embedding of the clean vocal, and the share of windows
nearest their own clean vocal among the batch's 16 ("own nearest"), overall and per vocal-to-accompaniment band.

Systems: the teacher on the raw mixture; the teacher after Spleeter; the teacher on the *oracle-masked* mixture (each
of its 40 mel bands scaled by the true vocal / (vocal + accompaniment) power: the best any mask on the GE2E's own
input could do); the teacher on the true vocal's mel at the mixture's gain; and each `--student` on the raw mixture.
On fold 0 this proxy ranks systems as P3 does (see docs/results.md).

    python benchmarks/distill_proxy.py --teacher /tmp/folds5/fold0/scoring --held /tmp/dfolds/fold0/held.txt \\
        --student student4=/tmp/dfolds/fold0/student4
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
BANDS = ((-6, 0), (0, 6), (6, 12))


def main() -> None:
    from singerid import cpu
    from singerid.data.manifest import load_tracks
    from singerid.models import load_model, resolve_checkpoint
    from singerid.models.ge2e import pad_to_partials
    from singerid.separation import load_separator
    from singerid.train.distill import (
        DistillBatches,
        instrumental_files,
        load_teacher,
        vocal_files,
    )

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "singing-dev" / "tracks.csv"))
    ap.add_argument("--teacher", required=True, help="the students' teacher (a GE2E checkpoint or `voice`)")
    ap.add_argument("--held", required=True, help="file listing the held-out singers, one per line (a fold's held.txt)")
    ap.add_argument("--student", action="append", default=[], metavar="NAME=CHECKPOINT")
    ap.add_argument("--batches", type=int, default=6, help="batches of 16 windows (default: 6)")
    ap.add_argument("--seed", type=int, default=123)
    a = ap.parse_args()
    cpu.configure()

    tracks = load_tracks(a.data)
    held = set(Path(a.held).read_text().split())
    vocals = vocal_files(tracks[tracks["singer"].isin(held) & (tracks["stem"] == "vocals")])
    insts = instrumental_files(tracks[tracks["stem"] == "instrumental"])
    teacher, _, _ = load_teacher(a.teacher)
    enc = teacher.encoder
    students = {n: load_model(resolve_checkpoint(p)).eval() for n, p in (s.split("=", 1) for s in a.student)}
    sep = load_separator("spleeter")
    ds = DistillBatches(vocals, insts, 16, a.seed, a.batches, 3.2, (-6.0, 12.0), 16000)
    print(f"{len(vocals)} vocal stems of {len(held)} held-out singers, {len(insts)} instrumentals, "
          f"{16 * a.batches} windows")

    def from_mel(mel, n):  # [B, frames, 40] → [B, 256] the encoder's window embedding
        return F.normalize(enc.mel_partials(mel, n).mean(1), dim=-1)

    rows: dict[str, list[torch.Tensor]] = {}
    vdas = []
    with torch.no_grad():
        for i in range(len(ds)):
            b = ds[i]
            mix, acc, n = b["mixture"], b["accompaniment"], b["mixture"].shape[-1]
            target = enc(b["vocal"])
            padded = pad_to_partials(mix)  # the mixture and its parts, at the mixture's gain
            pm, pv, pa = (enc.mel(pad_to_partials(w), padded) for w in (mix, mix - acc, acc))
            sep_voc = np.stack([sep.separate(x.numpy())["vocals"][:n] for x in mix]).astype(np.float32)
            embs = {"teacher, raw mixture": enc(mix), "teacher + Spleeter": enc(torch.from_numpy(sep_voc)),
                    "teacher, oracle mel mask": from_mel(pm * pv / (pv + pa + 1e-10), n),
                    "teacher, oracle vocal mel": from_mel(pv, n)}
            embs |= {f"{name}, raw mixture": m.encoder(mix) for name, m in students.items()}
            for k, e in embs.items():
                own = (e @ target.T).argmax(1) == torch.arange(len(e))
                rows.setdefault(k, []).append(torch.stack([(e * target).sum(-1), own.float()], 1))
            vdas.append(b["vda"])
    vda = torch.cat(vdas)
    head = "| system | cosine | own nearest | " + " | ".join(f"own nearest {lo:+d}…{hi:+d} dB" for lo, hi in BANDS)
    head += " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for k, r in rows.items():
        r = torch.cat(r)
        bands = [float(r[(vda >= lo) & (vda < hi), 1].mean()) for lo, hi in BANDS]
        print(f"| {k} | {float(r[:, 0].mean()):.3f} | {100 * float(r[:, 1].mean()):.1f} | "
              + " | ".join(f"{100 * x:.1f}" for x in bands) + " |")


if __name__ == "__main__":
    main()
