"""Decode any audio file to mono float32 at 16 kHz, with one clear error type for bad input.

soundfile (libsndfile) handles wav/flac/ogg/mp3 and can seek, so a 6-s window of a long file is read without decoding
the rest; PyAV (FFmpeg) handles everything else (m4a/aac/opus/webm/...).

Hostile input is refused early and cheaply: the declared sample rate and length are checked before any sample is
decoded, decoding runs in bounded blocks mixed down to mono as they come (a file whose header lies about its length
stops at the limit, never allocates what the header claims), and error reasons never contain the file's path (callers
put the name they want in front; the service must not leak its temporary paths).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MIN_SECONDS = 0.5  # anything shorter is refused
MIN_INPUT_RATE = 8000  # below this the 16 kHz front end has nothing to work with
MAX_INPUT_RATE = 768000  # above any real recording: a corrupt or hostile header
SILENCE_PEAK = 1e-4  # ~ -80 dBFS: a file whose AC part stays below this is "silent" (DC offset included)
MAX_PEAK = 1e3  # float files louder than this are scaled to peak 1 (no overflow downstream)
MAX_SECONDS = 2 * 3600.0  # a decode-whole call refuses files longer than this (windows still work)
BLOCK_FRAMES = 1 << 20  # decode in blocks of this many frames (mixed to mono as they come)
UNKNOWN_FRAMES = 1 << 62  # libsndfile reports "unknown length" as a huge frame count
MAX_FILE_BYTES = 2 << 30  # larger files are refused before any byte is read (2 h of 48-kHz stereo PCM is 1.4 GB)


class AudioError(ValueError):
    """Bad audio input: the message names the file and the reason (the reason alone never names a path)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{printable(path)}: {reason}")


def printable(name: str | os.PathLike) -> str:
    """A file name safe to echo on a terminal or in a log: control characters (ANSI escapes...) shown escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(name))


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int
    backend: str  # "soundfile" | "av"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


# whole-file decodes FFmpeg does faster than libsndfile (MP3: 0.19 s vs 0.33 s for 159 s of 44.1-kHz stereo)
FFMPEG_FIRST = (".mp3",)


def check_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> Path:
    """The one check every input file passes before any of its bytes is read (decoded or hashed): it exists, is a
    regular file (not a device, FIFO, socket or directory, also behind a link), is not empty, is at most `max_bytes`
    and can be opened for reading. → the path; AudioError saying why not."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise AudioError(p, "symbolic link loop") from None
        if e.errno == errno.ENOENT:
            raise AudioError(p, "broken symbolic link (target not found)" if p.is_symlink() else "file not found") from None
        raise AudioError(p, f"cannot read file ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(p, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(p, "not a regular file (a device, FIFO or socket)")
    if st.st_size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    if st.st_size > max_bytes:
        raise AudioError(p, f"file of {st.st_size / 2**30:.1f} GiB is larger than the {max_bytes / 2**30:g}-GiB limit")
    try:
        open(p, "rb").close()
    except OSError as e:
        raise AudioError(p, f"cannot read file ({e.strerror or type(e).__name__})") from None
    return p



def _reason(e: Exception, p: Path) -> str:
    """An exception as a short reason without the file's path (FFmpeg and libsndfile messages embed it)."""
    text = getattr(e, "strerror", None) or str(e)
    return f"{type(e).__name__}: {str(text).replace(str(p), '<file>')}"


_MAGIC_NO_MPEG = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd")
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_decoder(p: Path):
    """libsndfile's MPEG decoder (mpg123) writes notes straight to fd 2 on junk input: silence it for files that may
    reach it (not WAV/FLAC/Ogg/AIFF/AU), so a bad file gives our one clean line and nothing else."""
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head in _MAGIC_NO_MPEG:
        yield
        return
    with _stderr_lock:
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _check_rate(p: Path, rate: int) -> None:
    if rate < MIN_INPUT_RATE:
        raise AudioError(p, f"sample rate {rate} Hz is below the {MIN_INPUT_RATE} Hz minimum")
    if rate > MAX_INPUT_RATE:
        raise AudioError(p, f"sample rate {rate} Hz is above the {MAX_INPUT_RATE} Hz maximum (corrupt header?)")


def _too_long(p: Path, max_seconds: float, declared: float | None = None) -> AudioError:
    said = f" ({declared:.0f} s declared)" if declared is not None else ""
    return AudioError(p, f"longer than the {max_seconds:.0f}-s limit{said}")


def _av_open(p: Path):
    import av

    try:
        container = av.open(str(p))
    except Exception as e:  # av raises many types (InvalidDataError, ...)
        raise AudioError(p, f"not a readable audio file ({_reason(e, p)})") from None
    if not container.streams.audio:
        container.close()
        raise AudioError(p, "no audio stream in file")
    return container


def _av_declared(container) -> tuple[int, float | None]:
    """(sample rate, declared seconds or None) of the first audio stream, from the header."""
    s = container.streams.audio[0]
    rate = int(s.rate or s.codec_context.sample_rate or 0)
    if s.duration is not None and s.time_base is not None:
        return rate, float(s.duration * s.time_base)
    if container.duration is not None:
        return rate, container.duration / 1_000_000
    return rate, None


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, length and channel count without decoding the samples."""
    p = check_file(path)
    try:
        with _quiet_decoder(p):
            i = sf.info(str(p))
        if 0 < i.frames < UNKNOWN_FRAMES:
            return AudioInfo(int(i.samplerate), int(i.frames), int(i.channels), "soundfile")
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    container = _av_open(p)
    try:
        rate, seconds = _av_declared(container)
        channels = int(container.streams.audio[0].codec_context.channels or 1)
    finally:
        container.close()
    frames = int((seconds or 0.0) * rate)
    if frames <= 0:  # duration unknown from the header: decode to measure
        wave, sr = _decode_av(p)
        return AudioInfo(sr, len(wave), 1, "av")
    return AudioInfo(rate, frames, channels, "av")


class _Sink:
    """Mono blocks at `rate` collected at `out_rate` (None: as they come): resampled block by block (soxr's stream,
    the same result as one pass) into one array preallocated from `expect` input frames, so a long file never holds
    a list of blocks and their concatenation, or a native-rate and a resampled copy, at once."""

    def __init__(self, rate: int, out_rate: int | None, expect: int | None):
        self.rate, self.out_rate, self.n_in, self.n = rate, out_rate or rate, 0, 0
        self.stream = None if self.out_rate == rate else soxr.ResampleStream(rate, self.out_rate, 1, "float32", "HQ")
        size = int((expect or 60 * rate) * self.out_rate / rate * 1.01) + 4096
        self.buf = np.empty(size, np.float32)
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    CHUNK = 1 << 16  # small decoder frames (MP3: 1152 samples) are gathered into chunks this long before resampling

    def add(self, block: np.ndarray, last: bool = False) -> None:
        self.n_in += len(block)
        self.pending.append(np.ascontiguousarray(block, np.float32))
        self.n_pending += len(block)
        if self.n_pending >= self.CHUNK or last:
            chunk = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending, self.n_pending = [], 0
            self._put(chunk if self.stream is None else self.stream.resample_chunk(chunk, last=last))

    def _put(self, out: np.ndarray) -> None:
        if self.n + len(out) > len(self.buf):
            grown = np.empty(int((self.n + len(out)) * 1.5), np.float32)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : self.n + len(out)] = out
        self.n += len(out)

    def result(self) -> np.ndarray:
        self.add(np.zeros(0, np.float32), last=True)  # the last chunk, and the resampler's delay line
        return self.buf[: self.n]


def _frame_mono(frame) -> np.ndarray:
    a = frame.to_ndarray()
    if a.dtype.kind == "i":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32, copy=False)
    # planar: [channels, n]; packed: [1, n * channels]
    chans = len(frame.layout.channels)
    return a.mean(axis=0) if frame.format.is_planar else a.reshape(-1, chans).mean(axis=1)


def _decode_av(p: Path, max_seconds: float = MAX_SECONDS, out_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file via FFmpeg → (mono float32 [T], its rate: `out_rate` when given, else the file's). The declared
    length is checked before decoding and the decoded length while decoding, so a lying header stops at the limit."""
    container = _av_open(p)
    sink, total = None, 0
    try:
        declared_rate, seconds = _av_declared(container)
        if declared_rate:
            _check_rate(p, declared_rate)
        if seconds is not None and seconds > max_seconds:
            raise _too_long(p, max_seconds, seconds)
        for frame in container.decode(container.streams.audio[0]):
            if sink is None or frame.sample_rate != sink.rate:
                _check_rate(p, frame.sample_rate)
                if sink is not None:  # a rate change mid-stream: start again at the new rate (rare, short files)
                    raise AudioError(p, "sample rate changes within the stream")
                sink = _Sink(frame.sample_rate, out_rate, int((seconds or 0) * frame.sample_rate) or None)
            sink.add(_frame_mono(frame))
            total = sink.n_in
            if total > max_seconds * sink.rate:
                raise _too_long(p, max_seconds)
    except AudioError:
        raise
    except Exception as e:
        if sink is None or not sink.n_in:
            raise AudioError(p, f"cannot decode audio ({_reason(e, p)})") from None
        log.warning("%s: decoding stopped early (%s); keeping %d samples", p, _reason(e, p), total)
    finally:
        container.close()
    if sink is None or not sink.n_in:
        raise AudioError(p, "no audio samples decoded (empty or truncated)")
    return sink.result(), sink.out_rate


def _decode_sf(p: Path, start: int = 0, frames: int = -1, max_seconds: float = MAX_SECONDS,
               out_rate: int | None = None) -> tuple[np.ndarray, int, int]:
    """soundfile read of [start, start+frames) (frames -1: to the end, at most `max_seconds`) in bounded blocks
    → (mono float32 at `out_rate` or the file's rate, that rate, declared total frames; -1 when unknown)."""
    with _quiet_decoder(p), sf.SoundFile(str(p)) as f:
        rate, total = int(f.samplerate), int(f.frames)
        _check_rate(p, rate)
        known = 0 <= total < UNKNOWN_FRAMES
        if frames < 0 and known and total > max_seconds * rate:
            raise _too_long(p, max_seconds, total / rate)
        if start:
            f.seek(start)
        limit = int(max_seconds * rate)
        want = frames if frames >= 0 else limit + 1
        sink = _Sink(rate, out_rate, min(want, total - start) if known else None)
        while sink.n_in < want:
            a = f.read(min(BLOCK_FRAMES, want - sink.n_in), dtype="float32", always_2d=True)
            if not len(a):
                break
            sink.add(a.mean(axis=1))
        if frames < 0 and sink.n_in > limit:
            raise _too_long(p, max_seconds)
    n_in = sink.n_in
    wave = sink.result()
    if n_in and out_rate and out_rate != rate:
        total = int(total * out_rate / rate) if known else total  # declared length in output frames
    return wave, sink.out_rate, total if known else -1


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, rate, target, quality="HQ").astype(np.float32, copy=False)


def _validate(p: Path, wave: np.ndarray, rate: int, *, min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Refuse unusable audio; returns the wave (scaled to peak 1 if absurdly loud, so nothing overflows later)."""
    _check_rate(p, rate)
    if wave.size == 0:
        raise AudioError(p, "no audio samples (empty)")
    if not all(np.isfinite(wave[i : i + BLOCK_FRAMES]).all() for i in range(0, wave.size, BLOCK_FRAMES)):
        raise AudioError(p, "contains NaN or infinite samples")
    if wave.size < min_seconds * rate:
        raise AudioError(p, f"too short: {wave.size / rate:.2f} s < {min_seconds} s")
    lo, hi = float(wave.min()), float(wave.max())
    if hi - lo < 2 * SILENCE_PEAK:  # the AC part: a constant DC offset is silence too
        raise AudioError(p, "silent: no signal above -80 dBFS (a constant level is not audio)")
    peak = max(abs(lo), abs(hi))
    if peak > MAX_PEAK:
        log.warning("%s: sample peak %.3g is far above full scale; scaled to 1", p, peak)
        wave = (wave / np.float32(peak)).astype(np.float32)
    return wave


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode a whole file → mono float32 [T] at `sample_rate`. Raises AudioError for bad input."""
    p = check_file(path)
    if (why := _container_truncation(p)) is not None:
        raise AudioError(p, why)
    if p.suffix.lower() in FFMPEG_FIRST:
        wave, rate = _decode_av(p, max_seconds, sample_rate)
        return _validate(p, wave, rate)
    try:
        wave, rate, declared = _decode_sf(p, max_seconds=max_seconds, out_rate=sample_rate)
        if declared > 0 and wave.size < 0.9 * declared:
            raise AudioError(p, f"truncated: {wave.size} of {declared} declared frames")
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        if _looks_truncated(e):
            raise AudioError(p, f"truncated or corrupt ({_reason(e, p)})") from None
        wave, rate = _decode_av(p, max_seconds, sample_rate)
    return _validate(p, wave, rate)


def _container_truncation(p: Path) -> str | None:
    """Truncation the decoders pass over silently: a WAV `data` chunk longer than the file (libsndfile clamps), an
    Ogg stream whose last page is cut short or lacks the end-of-stream flag (decoders return what is there)."""
    with open(p, "rb") as fh:
        head = fh.read(1 << 16)
        if head[:4] == b"OggS":
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - (1 << 16)))
            return _ogg_truncation(fh.read())
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return _wav_truncation(head, p.stat().st_size)
    return None


def _wav_truncation(head: bytes, file_size: int) -> str | None:
    """A RIFF or RF64 WAVE whose `data` chunk declares more bytes than the file holds (RF64: the size in `ds64`)."""
    pos, ds64_data = 12, None
    if head[:4] == b"RF64" and head[12:16] == b"ds64" and len(head) >= 36:
        ds64_data = int.from_bytes(head[28:36], "little")
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"data" and size == 0xFFFFFFFF and ds64_data is not None:
            size = ds64_data
        if cid == b"data":
            have = file_size - (pos + 8)
            if size != 0xFFFFFFFF and have < size:
                return f"truncated: data chunk declares {size} bytes, file holds {have}"
            return None
        pos += 8 + size + (size & 1)
    return None


def _ogg_truncation(tail: bytes) -> str | None:
    """The file's last Ogg page (in `tail`, its last bytes) must be complete and flagged end-of-stream."""
    pos = tail.rfind(b"OggS")
    while pos >= 0 and (pos + 27 > len(tail) or tail[pos + 4] != 0):  # version byte 0: a real page header
        pos = tail.rfind(b"OggS", 0, pos)
    if pos < 0:
        return "truncated: no complete Ogg page at the end of the file"
    n_segs = tail[pos + 26]
    if pos + 27 + n_segs > len(tail):
        return "truncated: the last Ogg page is cut short"
    end = pos + 27 + n_segs + sum(tail[pos + 27 : pos + 27 + n_segs])
    if end > len(tail):
        return "truncated: the last Ogg page is cut short"
    if not tail[pos + 5] & 0x04:
        return "truncated: the Ogg stream has no end-of-stream page"
    return None


def _looks_truncated(e: Exception) -> bool:
    msg = str(e).lower()
    return any(k in msg for k in ("truncat", "unexpected end", "lost sync", "internal error"))


def read_window(
    path: str | os.PathLike, start: float, seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """[seconds * sample_rate] float32 mono from `start` s. Seeks where soundfile can, else decodes whole.

    A window running past the end is padded by repeating the audio (a 4-s clip still yields a 6-s window)."""
    p = check_file(path)
    n_out = int(round(seconds * sample_rate))
    try:
        info = _sf_info(p)
        rate = int(info.samplerate)
        _check_rate(p, rate)
        s0 = max(0, min(int(start * rate), max(0, info.frames - int(seconds * rate))))
        wave, rate, _ = _decode_sf(p, s0, int(math.ceil(seconds * rate)))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        full, rate = _decode_av(p)
        s0 = max(0, min(int(start * rate), max(0, len(full) - int(seconds * rate))))
        wave = full[s0 : s0 + int(math.ceil(seconds * rate))]
    wave = _validate(p, wave, rate, min_seconds=min(MIN_SECONDS, seconds))
    return fit_length(_resample(wave, rate, sample_rate), n_out)


def _sf_info(p: Path):
    """libsndfile's header info (decoder chatter silenced)."""
    with _quiet_decoder(p):
        return sf.info(str(p))


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Crop or repeat-pad a 1-D wave to exactly n samples."""
    if len(wave) >= n:
        return wave[:n]
    reps = int(math.ceil(n / max(1, len(wave))))
    return np.tile(wave, reps)[:n]
