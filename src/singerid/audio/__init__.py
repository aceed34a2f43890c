from .io import SAMPLE_RATE, AudioError, AudioInfo, audio_info, check_file, fit_length, load_audio, printable, read_window
from .windows import WINDOW_SECONDS, cut_windows, peak, peak_normalise, window_starts

__all__ = [
    "SAMPLE_RATE", "WINDOW_SECONDS", "AudioError", "AudioInfo", "audio_info", "check_file", "load_audio", "printable",
    "read_window", "fit_length", "cut_windows", "peak", "peak_normalise", "window_starts",
]
