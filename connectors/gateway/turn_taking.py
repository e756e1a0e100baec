"""Turn-taking: when the caller has started talking (a barge-in cue) and when a turn has ended.

Energy end-pointing on the call's own audio (any rate, no resampling per frame), per 20 ms frame; the dB energy is the runtime's
(:func:`emotion_runtime.audio.energy_db`), the same measure the emotion VAD uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion_runtime.audio import energy_db

__all__ = ["FRAME_S", "SAMPLE_RATE", "SegmentEvent", "TurnSegmenter"]

SAMPLE_RATE = 16000  # the speech recognisers' rate (turn audio is resampled to it once per turn)
FRAME_S = 0.02  # the VAD decides per 20 ms frame, the telephony frame size


@dataclass(frozen=True)
class SegmentEvent:
    """``onset``: the caller has been speaking ``min_onset_s`` (barge-in cue); ``turn``: a turn ended."""

    kind: str
    start_s: float
    end_s: float
    audio: np.ndarray | None = None


class TurnSegmenter:
    """Energy VAD end-pointing on 16 kHz audio: a turn ends after ``end_silence_s`` of silence.

    Why energy and not a model: it is cheap per 20 ms frame, has no dependency, and telephony
    audio of one caller is what it sees. A turn starts on frames above ``threshold_db`` dBFS and
    keeps counting frames down to ``hold_db`` lower as speech (soft word endings do not end it).
    Soft word onsets fall below the start threshold, so each turn keeps ``preroll_s`` of audio from
    before its first loud frame for the recogniser.
    """

    def __init__(
        self,
        threshold_db: float = -40.0,
        end_silence_s: float = 0.6,
        min_speech_s: float = 0.25,
        min_onset_s: float = 0.2,
        max_turn_s: float = 20.0,
        preroll_s: float = 0.8,
        hold_db: float = 10.0,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if end_silence_s <= 0 or max_turn_s <= end_silence_s:
            raise ValueError("need 0 < end_silence_s < max_turn_s")
        self.threshold_db = threshold_db
        self.sample_rate = sample_rate
        self._frame = int(sample_rate * FRAME_S)
        self.hold_threshold_db = threshold_db - hold_db
        self._end_frames = round(end_silence_s / FRAME_S)
        self._min_speech_frames = round(min_speech_s / FRAME_S)
        self._onset_frames = round(min_onset_s / FRAME_S)
        self._max_frames = round(max_turn_s / FRAME_S)
        self._preroll_frames = round(preroll_s / FRAME_S)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames: list[np.ndarray] = []  # current turn (or pre-roll when idle)
        self._in_turn = False
        self._voiced = 0
        self._silent_run = 0
        self._onset_sent = False
        self._turn_start_frame = 0
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> list[SegmentEvent]:
        """Feed float samples at ``sample_rate``; returns onsets and finished turns."""
        x = np.asarray(samples, dtype=np.float32)
        buf = np.concatenate([self._pending, x]) if self._pending.size else x  # 20 ms in: no copy
        n_frames = buf.shape[0] // self._frame
        self._pending = buf[n_frames * self._frame :]
        events: list[SegmentEvent] = []
        if not n_frames:
            return events
        levels = energy_db(buf[: n_frames * self._frame].reshape(n_frames, self._frame)).tolist()
        for i, level_db in enumerate(levels):
            frame = buf[i * self._frame : (i + 1) * self._frame]
            self.frames_seen += 1
            if not self._in_turn:
                voiced = level_db > self.threshold_db
                self._frames.append(frame)
                if len(self._frames) > self._preroll_frames + 1:
                    self._frames.pop(0)
                if voiced:
                    self._in_turn = True
                    self._voiced, self._silent_run, self._onset_sent = 1, 0, False
                    self._turn_start_frame = self.frames_seen - len(self._frames)
                continue
            self._frames.append(frame)
            if level_db > self.hold_threshold_db:
                self._voiced += 1
                self._silent_run = 0
            else:
                self._silent_run += 1
            now_s = self.frames_seen * FRAME_S
            if not self._onset_sent and self._voiced >= self._onset_frames:
                self._onset_sent = True
                events.append(SegmentEvent("onset", self._turn_start_frame * FRAME_S, now_s))
            if self._silent_run >= self._end_frames or len(self._frames) >= self._max_frames:
                events.extend(self._end_turn())
        return events

    def _end_turn(self) -> list[SegmentEvent]:
        frames, voiced = self._frames, self._voiced
        self._frames, self._in_turn, self._voiced, self._silent_run = [], False, 0, 0
        if voiced < self._min_speech_frames:
            return []  # a click or a cough, not a turn
        audio = np.concatenate(frames)
        start_s = self._turn_start_frame * FRAME_S
        return [SegmentEvent("turn", start_s, start_s + audio.shape[0] / self.sample_rate, audio)]

    def flush(self) -> list[SegmentEvent]:
        """End of call: a turn still open ends here."""
        return self._end_turn() if self._in_turn else []
