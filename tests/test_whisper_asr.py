"""Whisper (faster-whisper on the verified local Whisper-base files): real model, real speech."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from connectors.speech.asr import (
    WhisperRecognizer,
    create_recognizer,
    verified_whisper_folder,
    whisper_language,
)
from connectors.tools.demo import load_sample_call
from emotion_runtime.audio import decode as decode_audio
from emotion_runtime.audio import encode as encode_audio
from emotion_runtime.audio import pcm16_samples, resample
from emotune.config import AsrConfig, EmotuneConfig
from emotune.errors import AudioError, ConfigError, ModelFileError, SampleRateError, SpeechEngineError


def words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperRecognizer]:
    recognizer = create_recognizer(AsrConfig(engine="whisper", workers=1))
    assert isinstance(recognizer, WhisperRecognizer)
    yield recognizer
    recognizer.close()


def test_whisper_is_the_default_engine() -> None:
    assert EmotuneConfig().asr.engine == "whisper"


def test_whisper_hears_a_turn_through_an_8khz_phone_line(whisper: WhisperRecognizer) -> None:
    # The gateway's path: 8 kHz mu-law from the platform, upsampled to 16 kHz for the recogniser.
    turn = load_sample_call().turns[1]  # "Dogs are sitting by the door"
    line = resample(decode_audio(encode_audio(resample(turn.audio, 16000, 8000), "mulaw"), "mulaw"), 8000, 16000)
    result = whisper.transcribe(line)
    assert words(result.text) == words(turn.text), result.text
    assert result.engine == "whisper" and result.compute_s > 0


def test_whisper_input_errors_and_silence(whisper: WhisperRecognizer) -> None:
    with pytest.raises(SampleRateError, match="16000 Hz"):
        whisper.transcribe(np.zeros(16000, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="NaN"):
        whisper.transcribe(np.full(16000, np.nan, dtype=np.float32))
    assert whisper.transcribe(np.zeros(100, dtype=np.int16)).text == ""  # too short to hold words


def test_whisper_config_errors(tmp_path: Path) -> None:
    assert whisper_language("en-US") == "en" and whisper_language("ko-KR") == "ko"
    assert whisper_language("auto") is None
    with pytest.raises(ConfigError, match="language tag"):
        whisper_language("english please")
    with pytest.raises(ConfigError, match="no registered Whisper model"):
        verified_whisper_folder("whisper-giant")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="lacks config.json"):
        verified_whisper_folder(str(tmp_path))
    with pytest.raises(ValidationError, match="compute_type"):
        EmotuneConfig(asr={"compute_type": "float8"})


def test_turn_context_drops_decoding_loops() -> None:
    from connectors.speech.asr_worker import drop_repeats

    assert drop_repeats("Kids are talking by the door. Kids are talking by the door. Kids") == (
        "Kids are talking by the door."
    )
    assert drop_repeats("Where is my order? I ordered it on Monday.") == "Where is my order? I ordered it on Monday."
    assert drop_repeats("환불해 주세요. 환불해 주세요.") == "환불해 주세요."
    assert drop_repeats("") == ""
    # An abbreviation splits the looping sentence in two: the loop is a block of sentences
    # (bench_asr, RAVDESS clean: 13 inserted words on one clip before blocks were caught).
    assert drop_repeats("Dr. Sitting by the door. Dr. Sitting by the door. Dr. Sitting by the door. Dr") == (
        "Dr. Sitting by the door."
    )
    assert drop_repeats("Hi. I am Kim. Hi. I am Kim.") == "Hi. I am Kim."
    # Different sentences, even ones sharing words, are kept.
    assert drop_repeats("My card. My card was charged twice.") == "My card. My card was charged twice."
    assert drop_repeats("Yes. Yes, please. No.") == "Yes. Yes, please. No."
    # Beam search loops without punctuation (bench_asr, whisper_beam5, RAVDESS clean).
    assert drop_repeats("kids are talking by the door kids are talking by the door") == "kids are talking by the door"
    assert drop_repeats("Dogs are sitting by the door, dogs are sitting by the door, dogs are") == (
        "Dogs are sitting by the door,"
    )
    assert drop_repeats("Heute Abend, heute Abend, heute Abend, heute Abend, heute Abend") == "Heute Abend,"
    assert drop_repeats("we are not in a hot hot hot hot hot hot hot hot hot hot") == "we are not in a hot"
    # Short repeats, restarts and digits are speech, kept.
    assert drop_repeats("My number is 5 5 5 5 5 5 5 5 5.") == "My number is 5 5 5 5 5 5 5 5 5."
    assert drop_repeats("Thank you thank you.") == "Thank you thank you."
    assert drop_repeats("No no no, I said no.") == "No no no, I said no."
    assert drop_repeats("I want to, I want to cancel it.") == "I want to, I want to cancel it."


def test_both_encoder_contexts_hear_the_turn_and_silence_is_no_words(whisper: WhisperRecognizer) -> None:
    """``asr.context``: the turn-long encoder input (default) and Whisper's own 30 s agree on a
    phone-line turn; a second of line silence gives no words in either."""
    full = create_recognizer(AsrConfig(engine="whisper", workers=1, context="30s"))
    try:
        turn = load_sample_call().turns[0]  # "Kids are talking by the door"
        line = resample(decode_audio(encode_audio(resample(turn.audio, 16000, 8000), "mulaw"), "mulaw"), 8000, 16000)
        for recognizer in (whisper, full):
            assert words(recognizer.transcribe(line).text) == words(turn.text)
            assert recognizer.transcribe(np.zeros(16000, dtype=np.float32)).text == ""
    finally:
        full.close()


def _phone_line(audio: np.ndarray) -> np.ndarray:
    return resample(decode_audio(encode_audio(resample(audio, 16000, 8000), "mulaw"), "mulaw"), 8000, 16000)


def test_turns_decoded_as_one_batch_each_hear_their_own_words(whisper: WhisperRecognizer) -> None:
    """A batch pads the shorter turns with silence up to the longest; every turn still gets its own
    words and its own language, and a silent recording in the batch gives none."""
    call = load_sample_call()
    turns = [call.turns[0], call.turns[1]]
    lines = [_phone_line(turn.audio) for turn in turns]
    short = lines[1][: lines[1].shape[0] * 2 // 3]  # a shorter turn than the first: padded in the batch
    batch = whisper.transcribe_batch([lines[0], np.zeros(16000, dtype=np.float32), lines[1], short, np.zeros(50)])
    assert [t.audio_s for t in batch] == [lines[0].shape[0] / 16000, 1.0, lines[1].shape[0] / 16000,
                                          short.shape[0] / 16000, 50 / 16000]
    assert words(batch[0].text) == words(turns[0].text), batch[0].text
    assert batch[1].text == "" and batch[4].text == ""
    assert words(batch[2].text) == words(turns[1].text), batch[2].text
    assert words(batch[3].text)[:2] == words(turns[1].text)[:2], batch[3].text
    assert all(t.language == "en" for t in batch[:4])
    assert batch[0].compute_s == batch[2].compute_s > 0  # one decoding, shared


def test_turns_waiting_together_are_decoded_as_a_batch() -> None:
    """One worker, six turns at once: a free worker never waits for more (the first turn goes at
    once), the ones that queued meanwhile are taken together, at most ``max_batch`` at a time."""
    import concurrent.futures

    recognizer = create_recognizer(AsrConfig(engine="whisper", workers=1, max_batch=3, batch_wait_s=0.3))
    try:
        call = load_sample_call()
        lines = [_phone_line(call.turns[i % 2].audio) for i in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as threads:
            transcripts = list(threads.map(recognizer.transcribe, lines))
        for i, transcript in enumerate(transcripts):
            assert words(transcript.text) == words(call.turns[i % 2].text), transcript.text
        sizes = [t.batch_size for t in transcripts]
        assert max(sizes) > 1 and max(sizes) <= 3, sizes
        assert min(t.queued_s for t in transcripts) < 0.2  # the only worker was free: no batch wait
    finally:
        recognizer.close()
    with pytest.raises(ValidationError, match="max_batch"):
        AsrConfig(max_batch=0)
    with pytest.raises(ValidationError, match="batch_wait_s"):
        AsrConfig(batch_wait_s=-0.1)


def test_during_a_burst_a_free_worker_waits_for_its_batch_to_fill() -> None:
    """Two workers. A lone turn is taken at once (every worker free). While one worker decodes a long
    turn, three turns arriving 30 ms apart are gathered by the other into one batch (``batch_wait_s``);
    without the wait the first of them would be decoded alone."""
    recognizer = create_recognizer(AsrConfig(engine="whisper", workers=2, max_batch=3, batch_wait_s=0.3))
    try:
        line = _phone_line(load_sample_call().turns[0].audio)
        lone = recognizer.transcribe(line)
        assert lone.batch_size == 1 and lone.queued_s < 0.2, lone
        long_turn = recognizer.submit(np.tile(line, 3))
        while not long_turn.running():
            time.sleep(0.005)
        burst = []
        for _ in range(3):
            burst.append(recognizer.submit(line))
            time.sleep(0.03)
        served = [future.result(timeout=60) for future in burst]
        assert [t.batch_size for t in served] == [3, 3, 3], served
        assert served[0].queued_s >= 0.05  # it waited for the others
        assert long_turn.result(timeout=60).batch_size == 1
    finally:
        recognizer.close()


def test_a_turn_cancelled_while_it_waits_is_not_decoded(whisper: WhisperRecognizer) -> None:
    """The gateway awaits ``submit``'s future; a superseded turn's cancelled future drops the turn
    before a worker takes it, and the turns around it are still answered."""
    import asyncio

    from connectors.speech.asr import recognise

    call = load_sample_call()
    line = _phone_line(call.turns[0].audio)
    first = whisper.submit(np.tile(line, 3))
    while not first.running():  # the only worker has taken it (a batch of one)
        time.sleep(0.005)
    waiting, last = whisper.submit(line), whisper.submit(line)
    assert waiting.cancel()  # still queued behind the first turn
    assert words(last.result(timeout=60).text) == words(call.turns[0].text)
    assert words(first.result(timeout=60).text)[:6] == words(call.turns[0].text)
    assert waiting.cancelled()
    assert words(asyncio.run(recognise(whisper, line)).text) == words(call.turns[0].text)


def test_a_decoder_error_fails_every_turn_of_its_batch_and_the_next_turn_is_served(whisper: WhisperRecognizer) -> None:
    """An exception inside the worker (here: a turn whose bytes are not whole PCM16 samples, which the
    public API cannot send) reaches each turn of that batch as SpeechEngineError, never a bare error the
    gateway would not expect, and never a turn left waiting; the worker goes on serving."""
    from concurrent.futures import Future

    from connectors.speech.asr import _Pending

    line = _phone_line(load_sample_call().turns[0].audio)
    good = _Pending(pcm16_samples(line).tobytes(), line.shape[0] / 16000, Future())
    broken = _Pending(b"\x00" * 3201, 0.1, Future())
    for turn in (good, broken):
        turn.result.set_running_or_notify_cancel()
    whisper._decode([good, broken])
    for turn in (good, broken):
        with pytest.raises(SpeechEngineError, match="whisper failed on a"):
            turn.result.result(timeout=0)
    assert words(whisper.transcribe(line).text) == words(load_sample_call().turns[0].text)
