"""Whisper's log-mel front-end in NumPy, split for streaming (no torch).

Whisper computes, on 16 kHz audio: an STFT with ``n_fft = 400``, a periodic Hann window, hop 160
and centre padding (reflect, 200 samples each side); the power spectrum with the **last frame
dropped**; 80 mel filters (Slaney scale, Slaney area normalisation, 0-8 kHz); ``log10(max(x, 1e-10))``;
then over the whole input a clamp to ``max - 8`` and ``(x + 4) / 4``.

The last two steps depend on the maximum of the whole input, so they cannot run frame by frame.
We split the pipeline in two:

(a) :func:`log_mel_rows` / :class:`StreamingWhisperMel`: the log10 mel rows, computed
    incrementally, each sample pushed once. **Alignment:** row ``i`` is the 400-sample frame that
    *ends* at sample ``(i + 1) * 160``: it covers samples ``[i*160 - 240, i*160 + 160)``, the part
    before sample 0 being reflect padding (``x[240], x[239], ..., x[1]``, as Whisper pads, 240
    samples instead of 200). So ``n`` samples give ``n // 160`` rows, a row per 10 ms hop, complete
    when the hop's last sample arrives (exception: nothing before 241 samples, which the reflection
    of row 0 needs; :func:`rows_for`), and a 2-s window (32000 samples) is 200 rows, the encoder's
    ``T``. The stream never sees the end of the audio, so no row uses right-hand padding: a stream's
    rows equal :func:`log_mel_rows` of the same samples, whatever the push sizes. Against Whisper's
    own frame grid (frames centred on ``i * 160``) ours is shifted by 40 samples: away from the
    edges (rows ``2 <= i < n - 1``) our row ``i`` of ``x`` is Whisper's row ``i`` of ``x`` delayed by
    2.5 ms (40 zeros prepended; a test holds this). The first two rows differ by their padding, and
    Whisper's last row, which reaches 40 samples into its right-hand reflect padding, has no
    counterpart in a stream. To see exactly what the runtime sees, training crops its 200-row
    windows out of :func:`log_mel_rows` of the whole clip (rows of a window's own samples differ in
    their first two rows, which then hold the reflect padding).
(b) :func:`normalise_window`: the clamp to ``max - 8`` and ``(x + 4) / 4`` over one window of rows,
    applied per window at scoring time (a 2-s window is 200 rows = the encoder's ``T``).

:func:`whisper_log_mel` is Whisper's whole-clip feature (right padding and last-frame drop included,
no 30-s padding) for parity checks against reference implementations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "PAD",
    "LEFT_PAD",
    "LOG_FLOOR",
    "DYNAMIC_RANGE",
    "WINDOW_ROWS",
    "hann_window",
    "mel_filters",
    "rows_for",
    "log_mel_rows",
    "normalise_window",
    "encoder_input",
    "whisper_log_mel",
    "StreamingWhisperMel",
]

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
PAD = N_FFT // 2  # Whisper's centre padding on each side (whole-clip feature)
LEFT_PAD = N_FFT - HOP_LENGTH  # our left reflect padding: row i ends at sample (i + 1) * hop
LOG_FLOOR = 1e-10
WINDOW_ROWS = 200  # one 2-s window = 200 rows = the encoder's T
DYNAMIC_RANGE = 8.0  # log10 units kept below the window maximum


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """Periodic Hann window of ``N_FFT`` samples (as ``torch.hann_window(400)``), float32."""
    n = np.arange(N_FFT, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)
    window.flags.writeable = False
    return window


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / f_sp
    safe = np.maximum(hz, min_log_hz)
    return np.where(hz >= min_log_hz, min_log_mel + np.log(safe / min_log_hz) / logstep, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's 80 triangular filters, shape ``(N_FFT // 2 + 1, N_MELS)`` = (201, 80), float32.

    Centres equally spaced on the Slaney mel scale from 0 Hz to 8 kHz; each triangle scaled by
    ``2 / (upper edge - lower edge)`` in Hz (Slaney normalisation: equal area).
    """
    bins_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _slaney_mel_to_hz(np.linspace(0.0, _hz_to_slaney_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_hz[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins_hz[:, None]) / (upper - centre)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))[None, :]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


def rows_for(n_samples: int) -> int:
    """How many rows :func:`log_mel_rows` (and a stream) gives for ``n_samples`` samples:
    ``n_samples // 160``, or 0 up to 240 samples (the left reflection needs ``x[240]``)."""
    return 0 if n_samples <= LEFT_PAD else n_samples // HOP_LENGTH


def _rows_of_padded(padded: np.ndarray, n_rows: int) -> np.ndarray:
    """log10 mel rows of frames ``padded[i*hop : i*hop + n_fft]``, ``i < n_rows``: ``(n_rows, 80)``."""
    if n_rows <= 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded[: (n_rows - 1) * HOP_LENGTH + N_FFT], N_FFT)
    frames = frames[::HOP_LENGTH] * hann_window()
    spectrum = np.fft.rfft(frames, n=N_FFT, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filters()
    return np.log10(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


def _left_pad(signal: np.ndarray) -> np.ndarray:
    """Prepend the reflect padding ``x[240], x[239], ..., x[1]`` (needs 241 samples)."""
    return np.concatenate([signal[LEFT_PAD:0:-1], signal])


def _as_signal(signal: np.ndarray) -> np.ndarray:
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {signal.shape}")
    return signal


def log_mel_rows(signal: np.ndarray) -> np.ndarray:
    """(a) log10 mel rows of a 16 kHz mono float signal, ``(rows_for(len), 80)`` float32.

    Exactly the rows a :class:`StreamingWhisperMel` emits for the same samples (see the module
    docstring for the alignment): no right-hand padding, no normalisation.
    """
    signal = _as_signal(signal)
    n_rows = rows_for(signal.size)
    if n_rows == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    return _rows_of_padded(_left_pad(signal), n_rows)


def normalise_window(rows: np.ndarray) -> np.ndarray:
    """(b) Whisper's normalisation over one window of log10 rows ``[T, 80]``: clamp to
    ``max - 8``, then ``(x + 4) / 4``. Returns a new float32 array of the same shape."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.size == 0:
        return rows.copy()
    clamped = np.maximum(rows, rows.max() - np.float32(DYNAMIC_RANGE))
    return ((clamped + np.float32(4.0)) / np.float32(4.0)).astype(np.float32)


def encoder_input(rows: np.ndarray) -> np.ndarray:
    """One window of log10 rows ``[T, 80]`` -> the encoder's ``mel`` input ``[1, 80, T]`` (normalised)."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != N_MELS:
        raise ValueError(f"expected rows [T, {N_MELS}], got shape {rows.shape}")
    return np.ascontiguousarray(normalise_window(rows).T[None])


def whisper_log_mel(signal: np.ndarray, *, normalise: bool = True) -> np.ndarray:
    """Whisper's feature of a whole clip, ``[80, len // 160]`` float32 (as Whisper lays it out).

    Reflect padding on both sides, last STFT frame dropped, and (``normalise``) the clamp and scale
    over the whole clip; unlike ``whisper.log_mel_spectrogram`` no 30-s zero padding is added.
    Needs more than 200 samples (reflect padding).
    """
    signal = _as_signal(signal)
    if signal.size <= PAD:
        raise ValueError(f"need more than {PAD} samples for Whisper's reflect padding, got {signal.size}")
    padded = np.concatenate([signal[PAD:0:-1], signal, signal[-2 : -PAD - 2 : -1]])
    rows = _rows_of_padded(padded, signal.size // HOP_LENGTH)  # 1 + len // hop frames, last dropped
    return (normalise_window(rows) if normalise else rows).T.copy()


class StreamingWhisperMel:
    """``push(samples) -> rows``: log10 mel rows as audio arrives, each sample pushed once.

    The rows of all pushes, concatenated, equal :func:`log_mel_rows` of all samples concatenated.
    Keeps fewer than ``N_FFT`` samples between calls.
    """

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._started = False  # left reflect padding applied
        self.rows_emitted = 0
        self.samples_pushed = 0

    def reset(self) -> None:
        """Forget everything: the next sample is sample 0 of a new signal."""
        self._buf = np.zeros(0, dtype=np.float32)
        self._started = False
        self.rows_emitted = 0
        self.samples_pushed = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append 16 kHz float samples; return the rows they complete, ``(n, 80)`` float32."""
        samples = _as_signal(samples)
        self.samples_pushed += samples.size
        buf = np.concatenate([self._buf, samples]) if self._buf.size else samples.copy()
        if not self._started:
            if buf.size <= LEFT_PAD:
                self._buf = buf
                return np.zeros((0, N_MELS), dtype=np.float32)
            buf = _left_pad(buf)
            self._started = True
        n_rows = 0 if buf.size < N_FFT else (buf.size - N_FFT) // HOP_LENGTH + 1
        rows = _rows_of_padded(buf, n_rows)
        self._buf = buf[n_rows * HOP_LENGTH :].copy()
        self.rows_emitted += n_rows
        return rows
