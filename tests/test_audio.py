"""Audio I/O: formats, resampling, seekable windows, and every kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from singerid.audio import AudioError, audio_info, cut_windows, load_audio, read_window, window_starts
from singerid.cli import main

SR = 16000


def tone(seconds: float, sr: int = SR, f: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_av(path, x: np.ndarray, sr: int, codec: str) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        frame_size = 1024
        for i in range(0, len(x), frame_size):
            chunk = x[i : i + frame_size]
            fr = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            fr.sample_rate = sr
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize("ext,fmt", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")])
def test_soundfile_formats_resampled_to_16k_mono(tmp_path, ext, fmt):
    p = tmp_path / f"a.{ext}"
    sf.write(p, tone(2.0, 44100, channels=2), 44100, format=fmt)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 2 * SR) < 0.05 * SR  # mp3 adds codec padding
    spec = np.abs(np.fft.rfft(x[: SR]))
    assert abs(np.argmax(spec) * SR / SR - 440) < 3  # 1-s FFT → 1-Hz bins


@pytest.mark.parametrize("ext,codec", [("m4a", "aac"), ("opus", "libopus"), ("webm", "libopus")])
def test_ffmpeg_formats(tmp_path, ext, codec):
    p = tmp_path / f"a.{ext}"
    write_av(p, tone(2.0, 48000), 48000, codec)
    x = load_audio(p)
    assert abs(len(x) - 2 * SR) < 0.1 * SR
    assert np.abs(x).max() > 0.1
    w = read_window(p, 0.5, 1.0)
    assert w.shape == (SR,)


def test_read_window_seeks_and_matches_full_decode(tmp_path):
    p = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(30 * SR) * 0.1).astype(np.float32)
    sf.write(p, x, SR)
    w = read_window(p, 12.5, 6.0)
    full = load_audio(p)
    np.testing.assert_allclose(w, full[int(12.5 * SR) : int(18.5 * SR)], atol=1e-4)
    assert audio_info(p).duration == pytest.approx(30.0)


def test_short_clip_still_yields_one_padded_window(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, tone(4.0), SR)
    assert window_starts(4.0) == [0.0]
    w = read_window(p, 0.0, 6.0)
    assert w.shape == (6 * SR,)
    np.testing.assert_allclose(w[4 * SR : 5 * SR], w[:SR], atol=1e-6)  # repeat-padded, not zeros
    windows = cut_windows(load_audio(p), [0.0])
    assert windows.shape == (1, 6 * SR)


def _bad_files(tmp_path):
    files = {}
    files["missing"] = tmp_path / "nope.wav"
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 50)
    files["not audio"] = tmp_path / "text.wav"
    (tmp_path / "empty.flac").write_bytes(b"")
    files["empty"] = tmp_path / "empty.flac"
    sf.write(tmp_path / "full.flac", tone(5.0) + 0.01 * np.random.default_rng(0).standard_normal(5 * SR).astype(np.float32), SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "trunc.flac").write_bytes(data[: len(data) // 3])
    files["truncated flac"] = tmp_path / "trunc.flac"
    sf.write(tmp_path / "full.wav", tone(5.0), SR)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 3])
    files["truncated wav"] = tmp_path / "trunc.wav"
    sf.write(tmp_path / "tiny.wav", tone(0.2), SR)
    files["too short"] = tmp_path / "tiny.wav"
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    files["silent"] = tmp_path / "silent.wav"
    x = tone(2.0)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    files["nan"] = tmp_path / "nan.wav"
    sf.write(tmp_path / "low.wav", tone(2.0, 4000, f=300), 4000)
    files["low rate"] = tmp_path / "low.wav"
    files["directory"] = tmp_path
    return files


def test_every_bad_input_raises_one_clear_error(tmp_path):
    reasons = {
        "missing": "not found", "not audio": "not a readable audio", "empty": "empty", "truncated flac": "truncat",
        "truncated wav": "truncat", "too short": "too short", "silent": "silent", "nan": "nan",
        "low rate": "sample rate", "directory": "directory",
    }
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as ei:
            load_audio(path)
        msg = str(ei.value).lower()
        assert str(path).lower() in msg, name
        assert reasons[name] in msg, (name, msg)


def test_bad_input_in_a_command_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("path,singer\nnope.wav,a\n")
    rc = main(["embed", "--checkpoint", str(tmp_path), "--manifest", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o.parquet")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("singerid embed: error:")


def _flac_declaring(path, total: int):
    """A 3-s FLAC whose STREAMINFO claims `total` samples (0: unknown length)."""
    sf.write(path, tone(3.0), SR, format="FLAC")
    b = bytearray(path.read_bytes())
    v = int.from_bytes(b[18:26], "big")  # 20 bits rate, 3 channels, 5 bits per sample, 36 total samples
    b[18:26] = ((v & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path


def _hostile_files(tmp_path):
    """name → (file, expected reason substring, or None when it must load)."""
    out = {}
    out["header claims 4 M s"] = (_flac_declaring(tmp_path / "huge.flac", (1 << 36) - 1), "longer than")
    out["unknown length loads"] = (_flac_declaring(tmp_path / "unknown.flac", 0), None)
    sf.write(tmp_path / "one_hz.wav", tone(2.0)[:1000], 1)
    out["1-Hz rate"] = (tmp_path / "one_hz.wav", "sample rate 1 hz")
    sf.write(tmp_path / "dc.wav", np.full(3 * SR, 0.5, np.float32), SR)
    out["constant DC"] = (tmp_path / "dc.wav", "silent")
    sf.write(tmp_path / "full.ogg", tone(8.0) + 0.01 * np.random.default_rng(0).standard_normal(8 * SR).astype(np.float32),
             SR, format="OGG")
    data = (tmp_path / "full.ogg").read_bytes()
    (tmp_path / "trunc.ogg").write_bytes(data[: len(data) // 2])
    out["truncated ogg"] = (tmp_path / "trunc.ogg", "truncated")
    out["whole ogg loads"] = (tmp_path / "full.ogg", None)
    (tmp_path / "loop_a.wav").symlink_to(tmp_path / "loop_b.wav")
    (tmp_path / "loop_b.wav").symlink_to(tmp_path / "loop_a.wav")
    out["symlink loop"] = (tmp_path / "loop_a.wav", "symbolic link loop")
    return out


def test_hostile_inputs_refused_early_with_the_right_reason(tmp_path):
    import resource

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, (path, reason) in _hostile_files(tmp_path).items():
        if reason is None:
            assert load_audio(path).size > SR, name
            continue
        with pytest.raises(AudioError) as ei:
            load_audio(path)
        assert reason in str(ei.value).lower(), (name, str(ei.value))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200 * 1024  # KiB: nothing huge was allocated


def test_ten_hours_of_silence_refused_before_decoding(tmp_path, monkeypatch):
    p = _flac_declaring(tmp_path / "ten_hours.flac", 10 * 3600 * SR)

    def no_decoding(*args, **kwargs):
        raise AssertionError("samples decoded from a file whose header already declares it too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioError, match="longer than the 900-s limit"):
        load_audio(p, max_seconds=900)


def test_a_header_without_length_stops_decoding_at_the_limit(tmp_path):
    p = tmp_path / "long.flac"
    sf.write(p, np.tile(tone(1.0), 40), SR)
    b = bytearray(p.read_bytes())
    v = int.from_bytes(b[18:26], "big")
    b[18:26] = (v & ~((1 << 36) - 1)).to_bytes(8, "big")  # length unknown: decoded in blocks up to the limit
    p.write_bytes(bytes(b))
    with pytest.raises(AudioError, match="longer than the 20-s limit"):
        load_audio(p, max_seconds=20)


def test_huge_float_peaks_are_scaled_not_nan(tmp_path):
    sf.write(tmp_path / "loud.wav", tone(2.0) * np.float32(2e18), SR, subtype="FLOAT")
    x = load_audio(tmp_path / "loud.wav")
    assert np.isfinite(x).all() and 0.5 < np.abs(x).max() <= 1.01


def test_text_renamed_mp3_is_one_clean_reason_without_decoder_chatter(tmp_path, capfd):
    p = tmp_path / "text.mp3"
    p.write_bytes(b"\xff\xfb" + b"hello world" * 1000)  # an MPEG sync word, then junk: decoders chatter
    for ext in (".mp3", ".wav"):
        q = p.with_suffix(ext)
        q.write_bytes(p.read_bytes())
        capfd.readouterr()
        for read in (load_audio, lambda f: read_window(f, 0.0, 6.0), audio_info):
            with pytest.raises(AudioError) as ei:
                read(q)
            assert str(tmp_path) not in ei.value.reason
        assert capfd.readouterr().err == ""  # libmpg123's notes silenced
