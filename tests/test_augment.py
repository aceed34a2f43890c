"""singerid.augment: each augmentation changes the signal as specified, on synthetic tones with known f0 and formants."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from singerid.augment import (
    AUGMENTATIONS, WORLD_BASED, AugmentConfig, Augmenter, Band, autotune, codec, compress, eq, formant_shift,
    list_augmentations, pitch_shift, remix, reverb, vocoder, world_available,
)
from singerid.testing.synth import Voice, sing

SR = 16000
FORMANTS = ((600.0, 80.0), (1500.0, 120.0), (2700.0, 160.0))  # (Hz, bandwidth Hz)
# not pytest.importorskip("pyworld"): pyworld ≤ 0.3.5 fails `import pyworld` without pkg_resources
# (setuptools ≥ 81), while singerid.augment loads its extension directly
needs_world = pytest.mark.skipif(not world_available(), reason="needs pyworld (pip install singerid[train])")


def envelope(f: np.ndarray) -> np.ndarray:
    """Formant-like resonances with a -6 dB/octave tilt: amplitude at frequencies f [K] Hz."""
    f = np.asarray(f, float)
    res = sum(1.0 / np.sqrt(1.0 + ((f - c) / (bw / 2)) ** 2) for c, bw in FORMANTS)
    return (0.05 + res) / np.maximum(f / 200.0, 1.0)


def tone(f0: float, seconds: float = 1.5, env=envelope, seed: int = 0) -> np.ndarray:
    """A steady harmonic tone [seconds · SR] with harmonic amplitudes env(k · f0), peak 0.5, 20-ms fades."""
    t = np.arange(int(seconds * SR)) / SR
    k = np.arange(1, int(7800 // f0) + 1)
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(k))
    y = (env(k * f0)[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * t + phases[:, None])).sum(0)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return (0.5 * y * fade / np.abs(y).max()).astype(np.float32)


def f0_of(wave: np.ndarray, frame: int = 2048) -> float:
    """Median f0 (Hz) over the frames of [T]: normalised autocorrelation peak in 60-1000 Hz, parabolic refinement."""
    est = []
    for s in range(frame, len(wave) - 2 * frame, frame // 2):  # skip the edges
        x = wave[s:s + frame].astype(np.float64) * np.hanning(frame)
        ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * frame)) ** 2)[:frame]
        lo, hi = SR // 1000, SR // 60
        i = lo + int(np.argmax(ac[lo:hi]))
        a, b, c = ac[i - 1], ac[i], ac[i + 1]
        est.append(SR / (i + 0.5 * (a - c) / (a - 2 * b + c)))
    return float(np.median(est))


def semis(a: float, b: float) -> float:
    return float(12 * np.log2(b / a))


def envelope_error(wave: np.ndarray, f0: float, env) -> float:
    """RMS (dB) between the harmonic amplitudes of [T] below 4 kHz and env at those harmonics, gain removed."""
    x = wave[len(wave) // 6: -len(wave) // 6].astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    freqs = np.fft.rfftfreq(8 * len(x), 1 / SR)
    k = np.arange(1, int(4000 // f0) + 1)
    meas = np.array([spec[np.abs(freqs - h) < f0 / 4].max() for h in k * f0])
    d = 20 * np.log10(meas) - 20 * np.log10(env(k * f0))
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def level_db(wave: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(wave, dtype=np.float64)) + 1e-20))


def band_gain_db(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Power gain (dB) of y over x in the band [lo, hi] Hz."""
    f = np.fft.rfftfreq(len(x), 1 / SR)
    m = (f >= lo) & (f <= hi)
    return float(10 * np.log10((np.abs(np.fft.rfft(y))[m] ** 2).sum() / (np.abs(np.fft.rfft(x))[m] ** 2).sum()))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    """A sung synthetic melody with rests, 2 s."""
    return sing(Voice.random("v", rng(3)), 2.0, rng(4))


# ---------------------------------------------------------------- WORLD-based


@needs_world
@pytest.mark.parametrize("shift", [-4.0, 3.0])
def test_pitch_shift_moves_f0_and_keeps_formants(shift):
    x = tone(150.0)
    y = pitch_shift(x, rng(), semitones=shift)
    f0 = f0_of(y)
    assert semis(f0_of(x), f0) == pytest.approx(shift, abs=0.3)
    kept = envelope_error(y, f0, envelope)
    moved = envelope_error(y, f0, lambda f: envelope(f / 2 ** (shift / 12)))  # what resampling would give
    assert kept < 3.0 and kept < 0.5 * moved, (kept, moved)


@needs_world
def test_vocoder_keeps_f0_and_envelope_but_changes_the_wave():
    x = tone(180.0)
    y = vocoder(x, rng())
    assert semis(f0_of(x), f0_of(y)) == pytest.approx(0.0, abs=0.1)
    assert envelope_error(y, f0_of(y), envelope) < 3.0
    assert np.abs(y - x).max() > 1e-2


@needs_world
@pytest.mark.parametrize("ratio", [0.89, 1.12])
def test_formant_shift_moves_the_envelope_and_keeps_f0(ratio):
    x = tone(150.0)
    y = formant_shift(x, rng(), ratio=ratio)
    f0 = f0_of(y)
    assert semis(f0_of(x), f0) == pytest.approx(0.0, abs=0.1)
    moved = envelope_error(y, f0, lambda f: envelope(f / ratio))
    kept = envelope_error(y, f0, envelope)
    assert moved < 3.0 and moved < 0.6 * kept, (moved, kept)


@needs_world
@pytest.mark.parametrize("strength,cents", [(1.0, 0.0), (0.5, 20.0)])
def test_autotune_pulls_f0_to_the_semitone_grid(strength, cents):
    x = tone(220.0 * 2 ** (40 / 1200))  # A3 + 40 cents
    y = autotune(x, rng(), strength=strength)
    assert 100 * semis(220.0, f0_of(y)) == pytest.approx(cents, abs=8.0)


# ---------------------------------------------------------------- effects


def test_reverb_adds_a_tail_decaying_at_rt60():
    x = np.concatenate([tone(220.0, 0.5), np.zeros(SR, np.float32)])
    rt60 = 0.8
    y = reverb(x, rng(), rt60=rt60, wet=0.4)
    assert y.shape == x.shape and y.dtype == np.float32
    end = int(0.5 * SR)
    frames = y[end + SR // 20: end + SR // 2].reshape(-1, SR // 100)  # 50-500 ms after the dry end, 10-ms frames
    e = 10 * np.log10((frames.astype(np.float64) ** 2).mean(1))
    slope = np.polyfit(np.arange(len(e)) / 100, e, 1)[0]  # dB/s
    assert slope == pytest.approx(-60 / rt60, rel=0.2)
    assert level_db(y[end + SR // 10:]) > level_db(y[:end]) - 40  # an audible tail where the input is silent


@pytest.mark.parametrize("band,lo,hi,expected", [
    (Band("peak", 1000.0, 12.0, 0.5), 950.0, 1050.0, 12.0),
    (Band("low", 200.0, -12.0), 30.0, 60.0, -12.0 / (1 + (45 / 200) ** 2)),
    (Band("high", 3000.0, 9.0), 6000.0, 7000.0, 9.0 / (1 + (3000 / 6500) ** 2)),
])
def test_eq_changes_the_asked_band(band, lo, hi, expected):
    x = (0.1 * rng().standard_normal(2 * SR)).astype(np.float32)
    y = eq(x, rng(), bands=[band])
    ref = band_gain_db(x, y, 4000.0, 4400.0) if band.kind != "high" else band_gain_db(x, y, 300.0, 400.0)
    assert band_gain_db(x, y, lo, hi) - ref == pytest.approx(expected, abs=1.0)


def test_eq_random_bands_change_the_spectrum(voice):
    y = eq(voice, rng(1))
    assert y.shape == voice.shape and np.abs(y - voice).max() > 1e-3


def test_compress_follows_the_static_curve():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 220 * t)
    x = np.concatenate([0.5 * sine, 0.05 * sine]).astype(np.float32)  # -9 dB, then -29 dB RMS
    thr, ratio = -20.0, 4.0
    y = compress(x, rng(), threshold_db=thr, ratio=ratio, attack_ms=5.0, release_ms=50.0)
    steady = [slice(SR // 4, SR - SR // 10), slice(SR + SR // 4, 2 * SR - SR // 10)]  # after attack/release
    loud_in, quiet_in = (level_db(x[s]) for s in steady)
    loud_out, quiet_out = (level_db(y[s]) for s in steady)
    expected = (thr + (loud_in - thr) / ratio) - quiet_in  # 20 dB of range squeezed to ≈ 11.8 dB
    assert loud_out - quiet_out == pytest.approx(expected, abs=1.0)
    assert level_db(y) == pytest.approx(level_db(x), abs=0.1)  # make-up gain


@pytest.mark.parametrize("fmt,bitrate", [("mp3", 32_000), ("mp3", None), ("opus", 16_000), ("opus", None)])
def test_codec_round_trip_is_aligned_and_lossy(voice, fmt, bitrate):
    y = codec(voice, rng(), fmt=fmt, bitrate=bitrate)
    assert y.shape == voice.shape and y.dtype == np.float32
    assert np.corrcoef(voice, y)[0, 1] > 0.9  # aligned as is: no lag search here
    assert np.abs(y - voice).max() > 1e-3  # not a pass-through


def test_codec_unknown_format():
    with pytest.raises(ValueError, match="known: mp3, opus"):
        codec(np.zeros(SR, np.float32), rng(), fmt="flac")


def test_remix_adds_an_instrumental_window_at_the_asked_ratio():
    x = 0.6 * tone(200.0, 1.0)
    insts = [0.1 * rng(1).standard_normal(3 * SR), 0.1 * rng(2).standard_normal(int(1.5 * SR))]
    vda = 3.0
    y = remix(x, rng(5), insts, vda_db=vda)
    assert y.shape == x.shape and np.abs(y).max() <= 1.0
    res = y.astype(np.float64) - x
    assert level_db(x) - level_db(res) == pytest.approx(vda, abs=0.1)  # measured VDA
    assert any(is_scaled_window(res, inst) for inst in insts)


def is_scaled_window(res: np.ndarray, inst: np.ndarray) -> bool:
    """res [T] = g · inst[s:s + T] for some offset s (found from the first 200 samples) and gain g > 0."""
    s = int(np.argmax(np.correlate(inst, res[:200], "valid")))
    seg = inst[s:s + len(res)]
    if len(seg) < len(res):
        return False
    return bool(np.allclose(res, seg * (res @ seg) / (seg @ seg), atol=1e-4))


def test_remix_repeats_a_short_instrumental():
    x = 0.3 * tone(200.0, 1.0)
    y = remix(x, rng(), [0.1 * rng(1).standard_normal(SR // 4)], vda_db=0.0)
    assert level_db(x) - level_db(y.astype(np.float64) - x) == pytest.approx(0.0, abs=0.1)


def test_remix_peak_limited():
    x = 0.95 * tone(200.0, 1.0) / 0.5
    y = remix(x, rng(), [0.9 * np.sign(rng(1).standard_normal(2 * SR))], vda_db=-6.0)
    assert np.abs(y).max() <= 1.0 and np.abs(y - x).max() > 0.1


# ---------------------------------------------------------------- registry and Augmenter


def all_names() -> list[str]:
    """Every augmentation this environment can run (WORLD-based ones need pyworld)."""
    return [n for n in list_augmentations() if world_available() or n not in WORLD_BASED]


@pytest.mark.parametrize("name", list_augmentations())
@pytest.mark.parametrize("kind", ["voice", "silence"])
def test_every_augmentation_keeps_the_contract(name, kind, voice):
    if name not in all_names():
        pytest.skip("needs pyworld")
    x = voice[:SR] if kind == "voice" else np.zeros(SR, np.float32)
    extra = ([0.3 * rng(9).standard_normal(2 * SR).astype(np.float32)],) if name == "remix" else ()
    for seed in range(2):
        y = AUGMENTATIONS[name](x, rng(seed), *extra)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_augmenter_is_deterministic_per_seed(voice):
    aug = Augmenter(AugmentConfig(names=tuple(all_names()), prob=0.7, max_per_example=3),
                    instrumentals=[0.2 * rng(9).standard_normal(3 * SR)])
    x = voice[:SR]
    a, b, c = aug(x, rng(5)), aug(x, rng(5)), aug(x, rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all()


def test_augmenter_prob_zero_is_identity(voice):
    assert np.array_equal(Augmenter(AugmentConfig(names=tuple(all_names()), prob=0.0))(voice, rng()), voice)


def test_augmenter_respects_names_and_max_per_example(monkeypatch, voice):
    calls: list[list[str]] = []
    for name in ("reverb", "eq", "compress"):
        monkeypatch.setitem(AUGMENTATIONS, name, lambda w, r, _n=name: (calls[-1].append(_n), w)[1])
    aug = Augmenter(AugmentConfig(names=("reverb", "eq"), prob=1.0, max_per_example=1))
    for seed in range(20):
        calls.append([])
        aug(voice, rng(seed))
    assert all(len(c) == 1 for c in calls)
    assert {c[0] for c in calls} == {"reverb", "eq"}  # random order, compress never chosen


def test_augmenter_skips_remix_without_instrumentals(voice):
    aug = Augmenter(AugmentConfig(names=("remix",), prob=1.0))
    assert aug.names == () and np.array_equal(aug(voice, rng()), voice)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: .*reverb"):
        Augmenter(AugmentConfig(names=("reverb", "chorus")))


def test_import_without_pyworld():
    code = (
        "import sys; sys.modules['pyworld'] = None\n"
        "import numpy as np, singerid.augment as a\n"
        "x = np.zeros(1600, np.float32); a.reverb(x, np.random.default_rng(0))\n"
        "for call in (lambda: a.pitch_shift(x, np.random.default_rng(0)), lambda: a.Augmenter()):\n"
        "    try:\n        call(); raise SystemExit('no ImportError')\n"
        "    except ImportError as e:\n        assert 'pip install singerid[train]' in str(e), e\n"
        "print(a.world_available())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
