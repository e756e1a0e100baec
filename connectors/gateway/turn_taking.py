"""Turn-taking: when the caller has started talking (a barge-in cue) and when a turn has ended.

The structure follows the usual voice-bot pipeline: a frame classifier (VAD) says, per frame, how
likely speech is; a state machine with hysteresis turns that into speech onsets and turn ends
(``end_silence_s`` of silence closes a turn); the interruption rule (speech of at least
``barge_in_min_speech_s`` while the bot talks, see :mod:`connectors.gateway.dialogue_turn`) decides
whether the bot is cut off.

Two classifiers:

* :class:`SileroVad` (default, ``turn_taking.vad: silero``): the silero VAD network (ONNX, MIT,
  ``models/encoders/silero-vad/silero_vad.onnx``, sha256-checked by :mod:`emotion_runtime.weights`)
  on 32 ms frames of 8 or 16 kHz audio, with its recurrent state carried per call. It tells speech
  from stationary noise, babble-like hum and music far better than an energy threshold, which a
  steady line or cabin noise above the threshold keeps "in speech" for good. Frames below
  ``-70 dBFS`` (digital silence) skip the network.
* :class:`EnergyVad` (``vad: energy``): frame energy in dBFS, no model (the runtime's
  :func:`emotion_runtime.audio.energy_db`).

Background speech (babble, a TV, a colleague) is speech to any VAD, so on a babbling line a turn would
stay open until the background paused. :class:`CallerLevel` (``turn_taking.background_speech_db``)
tells the caller from it by level: on a noisy line, a frame well under the caller's own level is a
pause, whatever the VAD says (counted from where the caller's frames went quiet, and ended only by a
frame clearly louder again); on a quiet line it does nothing.

Whether a pause ends the turn is its own stage, :mod:`connectors.gateway.end_of_turn`
(``turn_taking.end_of_turn``: the fixed silence, or the smart-turn model asked after a short pause).
A short pause (``turn_taking.early_transcription_s``) also hands the turn so far to the recogniser
early (a ``pause`` event): if the turn then ends without more speech, its words are already there.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from connectors.gateway.end_of_turn import Decision, EndOfTurnRequest, EndOfTurnRule
from emotion_runtime import weights
from emotion_runtime.audio import StreamingResampler, energy_db
from emotune.errors import AudioError, ModelFileError, NotBuiltError

if TYPE_CHECKING:
    from emotion_runtime.end_of_turn import SmartTurnModel
    from emotune.config import EmotuneConfig

__all__ = ["FRAME_S", "SAMPLE_RATE", "CallerLevel", "EnergyVad", "FrameVad", "SegmentEvent", "SileroVad", "TurnSegmenter", "score_silero"]

SAMPLE_RATE = 16000  # the speech recognisers' rate (turn audio is resampled to it once per turn)
FRAME_S = 0.02  # the energy VAD decides per 20 ms frame, the telephony frame size
_SILERO_FLOOR_DB = -70.0  # below this a frame is silence without asking the network
BACKGROUND_SPEECH_SHARE = 0.3  # the VAD calls this share of the frames under the caller speech: babble


class FrameVad(Protocol):
    """Per-frame speech score on audio at ``sample_rate`` in frames of ``frame_samples``."""

    sample_rate: int
    frame_samples: int
    start_level: float  # a frame at or above this starts speech
    hold_level: float  # inside speech, frames at or above this still count as speech

    def levels(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` [n, frame_samples] float32 in [-1, 1] -> [n] scores (in stream order)."""
        ...


class EnergyVad:
    """Energy in dBFS: speech starts above ``threshold_db`` and holds down to ``hold_db`` lower."""

    def __init__(self, sample_rate: int, threshold_db: float = -40.0, hold_db: float = 10.0) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = int(sample_rate * FRAME_S)
        self.start_level = threshold_db
        self.hold_level = threshold_db - hold_db

    def levels(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(energy_db(frames), dtype=np.float64)


class SileroVad:
    """The silero VAD (v5 ONNX) for one stream: speech probability per 32 ms frame.

    8 and 16 kHz are native (256 / 512-sample frames, with the previous frame's last 32 / 64
    samples as context, as the model was trained). One onnxruntime session is shared by every
    call (it is stateless; the recurrent state lives here), one thread; :func:`score_silero`
    batches many streams' frames into one run.
    """

    _sessions: dict[str, object] = {}

    def __init__(
        self, sample_rate: int, speech_threshold: float = 0.5, silence_threshold: float = 0.35,
        model_name: str = "silero-vad/silero_vad.onnx",
    ) -> None:
        if sample_rate not in (8000, 16000):
            raise AudioError(f"silero VAD runs on 8 or 16 kHz audio, got {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.frame_samples = 512 if sample_rate == 16000 else 256
        self._context_samples = 64 if sample_rate == 16000 else 32
        self.start_level = speech_threshold
        self.hold_level = silence_threshold
        self._session = self._session_for(model_name)
        self._sr = np.array(sample_rate, dtype=np.int64)
        self.reset()

    @classmethod
    def _session_for(cls, model_name: str) -> object:
        session = cls._sessions.get(model_name)
        if session is None:
            import onnxruntime as ort

            try:
                path = weights.verified_path(model_name)
            except ModelFileError as exc:
                raise NotBuiltError(f"turn_taking.vad silero: {exc} (run `make weights`)") from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            cls._sessions[model_name] = session
        return session

    def reset(self) -> None:
        self._state = np.zeros((2, 128), dtype=np.float32)  # this stream's recurrent state
        self._context = np.zeros(self._context_samples, dtype=np.float32)

    def levels(self, frames: np.ndarray) -> np.ndarray:
        return score_silero([(self, frames)])[0]


def score_silero(batch: Sequence[tuple[SileroVad, np.ndarray]]) -> list[np.ndarray]:
    """Speech probabilities for several streams' frames, one network run per frame position.

    ``batch``: (stream, frames [n_i, frame_samples]) pairs, each stream at most once. The streams'
    i-th frames go through the network together (the recurrent state makes a stream's own frames
    sequential), so many calls cost a few batched runs instead of one run per call and frame:
    about 19 instead of 62 us per 8 kHz frame here. Frames of digital silence skip the network.
    Updates each stream's state; run it where nothing else touches these streams.
    """
    out = [np.zeros(frames.shape[0], dtype=np.float64) for _, frames in batch]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (vad, _) in enumerate(batch):
        groups.setdefault((id(vad._session), vad.sample_rate), []).append(i)
    for members in groups.values():
        first = batch[members[0]][0]
        run = first._session.run  # type: ignore[attr-defined]
        loud = {i: energy_db(batch[i][1]) > _SILERO_FLOOR_DB for i in members}
        for position in range(max(batch[i][1].shape[0] for i in members)):
            active = [i for i in members if batch[i][1].shape[0] > position]
            voiced = [i for i in active if loud[i][position]]
            if voiced:
                x = np.stack([np.concatenate([batch[i][0]._context, batch[i][1][position]]) for i in voiced])
                state = np.stack([batch[i][0]._state for i in voiced], axis=1)
                prob, state = run(None, {"input": x.astype(np.float32, copy=False), "state": state, "sr": first._sr})
                for k, i in enumerate(voiced):
                    out[i][position] = float(prob[k, 0])
                    batch[i][0]._state = state[:, k, :].copy()
            for i in active:
                vad = batch[i][0]
                vad._context = batch[i][1][position, -vad._context_samples :].astype(np.float32)
    return out


class CallerLevel:
    """Tells the caller from speech-like background (babble, a TV, a colleague) by level: the VAD hears
    both as speech, but on the line the caller is the loud voice.

    Per frame it tracks the line's background (a low percentile of the last ``window_s`` of frame
    energies) and, on the energy smoothed over ``smooth_frames``, the caller's level (a high percentile
    of the last ``window_s`` of frames the VAD called speech), both refreshed every ``update_s``. The
    gate acts only on a noisy line whose background is speech: the caller less than ``noisy_line_db``
    above the background, and the VAD calling at least ``BACKGROUND_SPEECH_SHARE`` of the last
    ``window_s`` of frames more than ``below_caller_db`` under the caller speech (judged against the
    current caller level, so background heard before the caller first spoke counts). There, such a frame is the background, not the
    caller, and counts as a pause; inside such a pause a frame must be ``resume_db`` louder than that to be
    the caller again (hysteresis: a loud babble syllable does not end the pause). Elsewhere (a quiet line, steady noise the VAD already rejects, or
    the first half window of the call, before the levels mean anything) every frame counts, so soft
    speech is not cut. After the first frame of a run it calls background (the only frame a pause can
    start on: the frame before it was the caller's), :attr:`quiet_frames` says how many of the last
    ``smooth_frames`` frames (this one included) were each, by their own energy, under the caller's level:
    in hindsight the pause began there (``turn_taking.background_pause_hindsight``); after every other
    frame it is 0, so a long background run costs no recount per frame."""

    def __init__(
        self, frame_s: float, below_caller_db: float, noisy_line_db: float, smooth_frames: int,
        window_s: float = 4.0, update_s: float = 0.25, resume_db: float = 0.0,
    ) -> None:
        self.below_caller_db, self.noisy_line_db, self.resume_db = below_caller_db, noisy_line_db, resume_db
        self.background_percentile = 10.0
        self._smooth_frames = max(1, smooth_frames)
        self._power = deque[float](maxlen=self._smooth_frames)
        self._line = deque[float](maxlen=max(1, round(window_s / frame_s)))
        self._speech = deque[float](maxlen=max(1, round(window_s / frame_s)))
        self._levels = deque[float](maxlen=max(1, round(window_s / frame_s)))
        self._vad_speech = deque[bool](maxlen=max(1, round(window_s / frame_s)))
        self._every = max(1, round(update_s / frame_s))
        self._warm_up = max(1, round(window_s / 2 / frame_s))  # the first seconds' percentiles are no line level
        self._since = 0
        self.background_db = -math.inf
        self.caller_db = math.inf
        self.background_is_speech = False  # the VAD calls the frames under the caller speech: babble, not hiss
        self.quiet_frames = 0
        self._in_background = False  # the last frame was background: the caller must be resume_db louder to return

    def push(self, energy_db: float, speech: bool) -> bool:
        """One frame's energy (dBFS) and whether the VAD called it speech -> loud enough to be the caller."""
        self._power.append(10.0 ** (energy_db / 10.0))
        level = 10.0 * math.log10(sum(self._power) / len(self._power) + 1e-12)
        self._line.append(energy_db)
        if speech:
            self._speech.append(level)
        self._levels.append(level)
        self._vad_speech.append(speech)
        self._since += 1
        if self._since >= self._every:
            self._since = 0
            self.background_db = float(np.percentile(np.fromiter(self._line, np.float64), self.background_percentile))
            if len(self._speech) >= self._every:
                self.caller_db = float(np.percentile(np.fromiter(self._speech, np.float64), 80.0))
            under = np.fromiter(self._levels, np.float64) < self.caller_db - self.below_caller_db
            heard = np.fromiter(self._vad_speech, bool)[under]
            self.background_is_speech = (len(self._line) >= self._warm_up and heard.size >= self._every
                                         and float(heard.mean()) >= BACKGROUND_SPEECH_SHARE)
        self.quiet_frames = 0
        if not self.background_is_speech or self.caller_db - self.background_db >= self.noisy_line_db:
            self._in_background = False
            return True
        threshold = self.caller_db - self.below_caller_db
        if level >= threshold + (self.resume_db if self._in_background else 0.0):
            self._in_background = False
            return True
        if not self._in_background:
            depth = min(len(self._line), self._smooth_frames)
            recent = itertools.islice(reversed(self._line), depth)
            self.quiet_frames = next((k for k, e in enumerate(recent) if e >= threshold), depth)
        self._in_background = True
        return False


@dataclass(frozen=True)
class SegmentEvent:
    """``onset``: the caller has been speaking ``min_onset_s`` (barge-in cue); ``turn``: a turn ended;
    ``pause``: ``early_transcription_s`` of silence inside a turn, with the turn's audio so far (to
    transcribe early). ``pause`` numbers the pauses of a stream: a ``turn`` that ends in the same
    pause as a ``pause`` event has no speech after that event's audio."""

    kind: str
    start_s: float
    end_s: float
    audio: np.ndarray | None = None
    pause: int = 0


class TurnSegmenter:
    """End-pointing: a turn ends when its end-of-turn rule says so (default: ``end_silence_s``
    without speech frames; with ``end_of_turn: smart_turn`` the model's verdict after a short pause).

    A turn starts on a frame scoring at least the VAD's ``start_level`` and keeps counting frames
    down to its ``hold_level`` as speech (soft word endings do not end it). Soft word onsets fall
    below the start level, so each turn keeps ``preroll_s`` of audio from before its first speech
    frame for the recogniser. ``onset`` fires once per turn after ``min_onset_s`` of speech
    frames; a turn with less than ``min_speech_s`` of speech (a click, a cough) is dropped; a turn
    is cut at ``max_turn_s``. Times are seconds of this stream since its start. With a
    ``caller_level``, frames it calls background count as no speech, for the turn and for
    :meth:`speech_share` alike.

    With a model rule, the silent frame that reaches ``short_silence_s`` leaves an
    :class:`EndOfTurnRequest` (the turn's audio so far). :meth:`push` answers it at once with
    ``end_of_turn_model``; the gateway's VAD hub takes it (:meth:`take_end_of_turn_request`), scores
    it off the event loop and hands the answer back with :meth:`end_of_turn_answer`.
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
        vad: FrameVad | None = None,
        rule: EndOfTurnRule | None = None,
        end_of_turn_model: SmartTurnModel | None = None,
        early_transcription_s: float | None = None,
        caller_level: CallerLevel | None = None,
        background_pause_hindsight: bool = False,
    ) -> None:
        if end_silence_s <= 0 or max_turn_s <= end_silence_s:
            raise ValueError("need 0 < end_silence_s < max_turn_s")
        if early_transcription_s is not None and early_transcription_s <= 0:
            raise ValueError("need early_transcription_s > 0 (or None)")
        self.rule = rule or EndOfTurnRule(
            end_silence_s=end_silence_s, short_silence_s=min(0.2, end_silence_s), long_silence_s=end_silence_s
        )
        if self.rule.uses_model and end_of_turn_model is None:
            raise ValueError("end_of_turn smart_turn needs the model")
        self.end_of_turn_model = end_of_turn_model
        self.input_rate = sample_rate
        self.vad: FrameVad = vad or EnergyVad(sample_rate, threshold_db, hold_db)
        self.sample_rate = self.vad.sample_rate  # the rate of the turns' audio
        self._resampler = (
            StreamingResampler(sample_rate, self.sample_rate) if self.sample_rate != sample_rate else None
        )
        self._frame = self.vad.frame_samples
        self.frame_s = self._frame / self.sample_rate
        self._min_speech_frames = round(min_speech_s / self.frame_s)
        self._onset_frames = max(1, round(min_onset_s / self.frame_s))
        self._max_frames = round(max_turn_s / self.frame_s)
        self._preroll_frames = round(preroll_s / self.frame_s)
        self._early_frames = max(1, round(early_transcription_s / self.frame_s)) if early_transcription_s else 0
        self._end_frames = math.ceil(self.rule.end_silence_s / self.frame_s - 1e-9)  # what the silence rule waits
        self.caller_level = caller_level
        self.background_pause_hindsight = background_pause_hindsight and caller_level is not None
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames: list[np.ndarray] = []  # current turn (or pre-roll when idle)
        self._in_turn = False
        self._voiced = 0
        self._silent_run = 0
        self._advanced = 0
        self._onset_sent = False
        self._turn_start_frame = 0
        self.frames_seen = 0
        # Speech flag of each recent frame (a minute): what share of an emotion window was speech.
        self._speech = deque[bool](maxlen=round(60.0 / self.frame_s))
        # This pause's end-of-turn state (a pause: silent frames after speech inside a turn).
        self._pause = 0
        self._early_sent = False  # this pause's early-transcription event is out
        self._asked = False
        self._probability: float | None = None
        self._request: EndOfTurnRequest | None = None

    @classmethod
    def from_config(cls, config: EmotuneConfig, sample_rate: int) -> TurnSegmenter:
        """The segmenter ``turn_taking:`` asks for, on a call's audio at ``sample_rate``."""
        tt = config.turn_taking
        vad: FrameVad
        caller_level = None
        if tt.vad == "silero":
            vad_rate = sample_rate if sample_rate in (8000, 16000) else SAMPLE_RATE
            vad = SileroVad(vad_rate, tt.speech_threshold, tt.silence_threshold)
            if tt.background_speech_db is not None:
                frame_s = vad.frame_samples / vad.sample_rate
                caller_level = CallerLevel(frame_s, tt.background_speech_db, tt.noisy_line_db,
                                           max(1, round(tt.caller_level_smooth_s / frame_s)), resume_db=tt.caller_resume_db)
        else:
            vad = EnergyVad(sample_rate, config.streaming.vad_threshold_db)
        rule = EndOfTurnRule.from_config(tt)
        model = None
        if rule.uses_model:
            from emotion_runtime.end_of_turn import SmartTurnModel

            try:
                model = SmartTurnModel.load()
            except ModelFileError as exc:
                raise NotBuiltError(f"turn_taking.end_of_turn smart_turn: {exc} (run `make weights`)") from exc
        return cls(
            end_silence_s=tt.end_silence_s, min_speech_s=tt.min_speech_s, min_onset_s=tt.barge_in_min_speech_s,
            max_turn_s=tt.max_turn_s, preroll_s=tt.preroll_s, sample_rate=sample_rate, vad=vad,
            rule=rule, end_of_turn_model=model, early_transcription_s=tt.early_transcription_s,
            caller_level=caller_level, background_pause_hindsight=tt.background_pause_hindsight,
        )

    @property
    def in_speech(self) -> bool:
        """The caller is inside a turn (speech started, the end-pointing silence not yet over)."""
        return self._in_turn

    @property
    def batched(self) -> bool:
        """Its VAD is scored in batches with other calls' (the gateway's VAD hub) rather than in :meth:`push`."""
        return isinstance(self.vad, SileroVad)

    def push(self, samples: np.ndarray) -> list[SegmentEvent]:
        """Feed float samples at the input rate; returns onsets and finished turns."""
        frames = self.take_frames(samples)
        if not frames.shape[0]:
            return []
        levels = self.vad.levels(frames)
        if self.end_of_turn_model is None:
            return self.advance(frames, levels)
        # Answered inline, before the next frame: the answer counts from the frame that asked.
        events: list[SegmentEvent] = []
        start = 0
        while start < frames.shape[0]:
            events += self.advance(frames[start:], levels[start:], stop_on_request=True)
            start += self._advanced
            request = self.take_end_of_turn_request()
            if request is not None:
                probability = self.end_of_turn_model.probability(request.audio, request.sample_rate)
                events += self.end_of_turn_answer(request.pause, probability)
        return events

    def take_frames(self, samples: np.ndarray) -> np.ndarray:
        """Float samples at the input rate -> the whole VAD frames they complete, [n, frame_samples]."""
        x = np.asarray(samples, dtype=np.float32)
        if self._resampler is not None:
            x = self._resampler.process(x)
        buf = np.concatenate([self._pending, x]) if self._pending.size else x  # whole frames in: no copy
        n_frames = buf.shape[0] // self._frame
        self._pending = buf[n_frames * self._frame :]
        return buf[: n_frames * self._frame].reshape(n_frames, self._frame)

    def advance(self, frames: np.ndarray, scores: np.ndarray, stop_on_request: bool = False) -> list[SegmentEvent]:
        """The state machine over frames from :meth:`take_frames` and their VAD scores, in order.
        ``stop_on_request``: return right after the frame that asks the end-of-turn model
        (``self._advanced`` says how many frames were taken)."""
        events: list[SegmentEvent] = []
        start_level, hold_level = self.vad.start_level, self.vad.hold_level
        above, quiet = self._caller_loud(frames, scores)
        self._advanced = 0
        for i, level in enumerate(np.asarray(scores).tolist()):
            self._advanced = i + 1
            frame = frames[i]
            self.frames_seen += 1
            if not above[i]:
                level = -math.inf  # the VAD hears speech, but no louder than the line's background
            self._speech.append(level >= start_level)
            if not self._in_turn:
                self._frames.append(frame)
                if len(self._frames) > self._preroll_frames + 1:
                    self._frames.pop(0)
                if level >= start_level:
                    self._in_turn = True
                    self._voiced, self._silent_run, self._onset_sent = 1, 0, False
                    self._turn_start_frame = self.frames_seen - len(self._frames)
                continue
            self._frames.append(frame)
            if level >= hold_level:
                self._voiced += 1
                if self._silent_run:
                    self._new_pause()
                self._silent_run = 0
            else:
                # In hindsight a background pause began at the first of its frames that were already quiet.
                hindsight = quiet[i] if self.background_pause_hindsight and not self._silent_run else 0
                self._silent_run = max(self._silent_run + 1, hindsight)
            now_s = self.frames_seen * self.frame_s
            early = bool(self._early_frames) and self._silent_run >= self._early_frames and not self._early_sent
            self._early_sent |= early
            if early and self._voiced >= self._min_speech_frames:
                # Padded with digital silence to the length the turn has if it ends in this pause: the
                # recogniser then sees the same input (Whisper's output shifts with the input's length).
                pad = np.zeros(max(0, self._end_frames - self._silent_run) * self._frame, dtype=np.float32)
                events.append(SegmentEvent("pause", self._turn_start_frame * self.frame_s, now_s,
                                           np.concatenate([*self._frames, pad]), self._pause))  # fmt: skip
            if not self._onset_sent and self._voiced >= self._onset_frames:
                self._onset_sent = True
                events.append(SegmentEvent("onset", self._turn_start_frame * self.frame_s, now_s))
            decision = self._decide() if self._silent_run else Decision.WAIT
            if decision is Decision.END or len(self._frames) >= self._max_frames:
                events.extend(self._end_turn())
            elif decision is Decision.ASK:
                self._asked = True
                audio = np.concatenate(self._frames)
                self._request = EndOfTurnRequest(self._pause, audio, self.sample_rate)
                if stop_on_request:
                    break
        return events

    def _caller_loud(self, frames: np.ndarray, scores: np.ndarray) -> tuple[list[bool], list[int]]:
        """Per frame: loud enough to be the caller (all True without a :class:`CallerLevel`), and the
        caller level's :attr:`~CallerLevel.quiet_frames` after it."""
        if self.caller_level is None:
            return [True] * frames.shape[0], [0] * frames.shape[0]
        start_level, level = self.vad.start_level, self.caller_level
        energies = np.asarray(energy_db(frames)).tolist()
        loud, quiet = [], []
        for e, s in zip(energies, np.asarray(scores).tolist(), strict=True):
            loud.append(level.push(e, s >= start_level))
            quiet.append(level.quiet_frames)
        return loud, quiet

    def _decide(self) -> Decision:
        return self.rule.decide(self._silent_run * self.frame_s, self._asked, self._probability)

    def _new_pause(self) -> None:
        self._pause += 1
        self._early_sent = False
        self._asked, self._probability, self._request = False, None, None

    def take_end_of_turn_request(self) -> EndOfTurnRequest | None:
        """The pending question to the end-of-turn model, if any (taken once)."""
        request, self._request = self._request, None
        return request

    def end_of_turn_answer(self, pause: int, probability: float) -> list[SegmentEvent]:
        """The model's answer for ``pause``: ends the turn now if the rule says so (an answer for a
        pause already over, because the caller spoke again or the turn ended, is ignored)."""
        if pause != self._pause or not self._in_turn or not self._silent_run:
            return []
        self._probability = probability
        return self._end_turn() if self._decide() is Decision.END else []

    def speech_share(self, start_s: float, end_s: float) -> float | None:
        """Share of the frames in [start_s, end_s) (stream time) the VAD called speech; None when
        none of them has been scored yet (or they are older than the last minute)."""
        first_kept = self.frames_seen - len(self._speech)
        lo = max(int(start_s / self.frame_s), first_kept)
        hi = min(int(np.ceil(end_s / self.frame_s)), self.frames_seen)
        if hi <= lo:
            return None
        flags = list(itertools.islice(self._speech, lo - first_kept, hi - first_kept))
        return sum(flags) / len(flags)

    def _end_turn(self) -> list[SegmentEvent]:
        frames, voiced, pause = self._frames, self._voiced, self._pause
        self._frames, self._in_turn, self._voiced, self._silent_run = [], False, 0, 0
        self._new_pause()
        if voiced < self._min_speech_frames:
            return []  # a click or a cough, not a turn
        audio = np.concatenate(frames)
        start_s = self._turn_start_frame * self.frame_s
        return [SegmentEvent("turn", start_s, start_s + audio.shape[0] / self.sample_rate, audio, pause)]

    def flush(self) -> list[SegmentEvent]:
        """End of call: a turn still open ends here."""
        return self._end_turn() if self._in_turn else []
