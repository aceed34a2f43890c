from .io import SAMPLE_RATE, AudioError, AudioInfo, audio_info, fit_length, load_audio, read_window
from .windows import WINDOW_SECONDS, cut_windows, peak_normalise, window_starts

__all__ = [
    "SAMPLE_RATE", "WINDOW_SECONDS", "AudioError", "AudioInfo", "audio_info", "load_audio", "read_window",
    "fit_length", "cut_windows", "peak_normalise", "window_starts",
]
