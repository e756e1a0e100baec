"""ASR (pocketsphinx) and TTS (espeak-ng) engines: real engines, real audio."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from connectors.speech.asr import ASR_SAMPLE_RATE, NoRecognizer, PocketsphinxRecognizer, create_recognizer
from connectors.speech.asr import register_engine as register_asr_engine
from connectors.speech.tts import EspeakSynthesizer, NoSynthesizer, Speech, create_synthesizer, ssml_for
from connectors.speech.tts import register_engine as register_tts_engine
from connectors.tools.demo import load_sample_call
from emotion_runtime.audio import decode as decode_audio
from emotion_runtime.audio import encode as encode_audio
from emotion_runtime.audio import resample
from emotune.config import PROJECT_ROOT, AsrConfig, Prosody, TonePolicy, TtsConfig, load_config
from emotune.errors import AudioError, ConfigError, NotBuiltError, SampleRateError, SpeechEngineError

TEXT = "I understand. Let me check your order and get this sorted out for you."


def median_pitch_hz(speech: Speech) -> float:
    """Median autocorrelation pitch over loud frames (good enough to compare two voices)."""
    x, sr = speech.samples.astype(np.float64), speech.sample_rate
    frame, pitches = 1024, []
    loud = 0.3 * np.sqrt(np.mean(x**2)) * 2
    for start in range(0, x.shape[0] - frame, frame // 2):
        seg = x[start : start + frame]
        if np.sqrt(np.mean(seg**2)) < loud:
            continue
        ac = np.correlate(seg, seg, "full")[frame - 1 :]
        lo, hi = sr // 400, sr // 60
        pitches.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    assert pitches, "no voiced frames found"
    return float(np.median(pitches))


@pytest.fixture(scope="module")
def espeak() -> EspeakSynthesizer:
    return EspeakSynthesizer("en-us")


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketsphinxRecognizer]:
    recognizer = PocketsphinxRecognizer()
    yield recognizer
    recognizer.close()


def test_tone_changes_duration_pitch_and_level(espeak: EspeakSynthesizer) -> None:
    policy = TonePolicy()
    speech = {tone: espeak.synthesize(TEXT, policy.prosody[tone]) for tone in ("standard", "calm", "upbeat")}
    # calm: rate 0.85 -> longer; upbeat: rate 1.1 -> shorter.
    assert speech["calm"].duration_s > speech["standard"].duration_s * 1.08
    assert speech["upbeat"].duration_s < speech["standard"].duration_s * 0.97
    # calm: -2 semitones, upbeat: +2 semitones.
    assert median_pitch_hz(speech["calm"]) < median_pitch_hz(speech["standard"]) < median_pitch_hz(speech["upbeat"])
    # calm: -3 dB applied as an exact gain.
    def rms(s: Speech) -> float:
        return float(np.sqrt(np.mean(s.samples**2)))

    assert 20 * np.log10(rms(speech["calm"]) / rms(speech["standard"])) < -2.0


def test_speech_resampled_for_telephony(espeak: EspeakSynthesizer) -> None:
    speech = espeak.synthesize("Hello there.", Prosody())
    phone = speech.at_rate(8000)
    assert phone.sample_rate == 8000
    assert abs(phone.duration_s - speech.duration_s) < 0.01
    assert phone.pcm16().dtype == np.int16


def test_ssml_for_renders_prosody_and_escapes_text() -> None:
    ssml = ssml_for("Tom & Jerry <3", Prosody(rate=0.85, pitch_semitones=-2, volume_db=-3))
    assert ssml == (
        '<speak><prosody rate="85%" pitch="-2st" volume="-3dB">Tom &amp; Jerry &lt;3</prosody></speak>'
    )


def test_tts_rejects_empty_and_oversized_text(espeak: EspeakSynthesizer) -> None:
    with pytest.raises(AudioError, match="empty"):
        espeak.synthesize("   ", Prosody())
    with pytest.raises(AudioError, match="too long"):
        espeak.synthesize("word " * 1000, Prosody())


def test_missing_tts_binary_is_a_clear_error() -> None:
    with pytest.raises(NotBuiltError, match="apt-get install -y espeak-ng"):
        EspeakSynthesizer(binary="espeak-ng-that-does-not-exist")


def test_engine_factories() -> None:
    assert create_synthesizer(TtsConfig(engine="none")).synthesize("hi", Prosody()).samples.size == 0
    assert isinstance(create_recognizer(AsrConfig(engine="none")), NoRecognizer)
    assert shutil.which("espeak-ng")  # the Makefile's Debian step installs it


def test_a_registered_engine_is_accepted_by_config_and_built() -> None:
    with pytest.raises(ConfigError, match=r"asr\.engine: .*unknown engine 'test-cloud-asr'"):
        load_config(PROJECT_ROOT / "config.yml", asr={"engine": "test-cloud-asr"})
    register_asr_engine("test-cloud-asr", lambda cfg: NoRecognizer())
    register_tts_engine("test-cloud-tts", lambda cfg: NoSynthesizer())
    config = load_config(PROJECT_ROOT / "config.yml", asr={"engine": "test-cloud-asr"}, tts={"engine": "test-cloud-tts"})
    assert isinstance(create_recognizer(config.asr), NoRecognizer)
    assert isinstance(create_synthesizer(config.tts), NoSynthesizer)
    with pytest.raises(ValueError, match="engine name"):
        register_asr_engine("bad name!", lambda cfg: NoRecognizer())


def test_an_installed_engine_is_found_by_its_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A package on sys.path declaring emotune.asr_engines, as `pip install acme-emotune` would.
    (tmp_path / "acme_emotune.py").write_text(
        "from connectors.speech.asr import NoRecognizer\n\n"
        "class AcmeRecognizer(NoRecognizer):\n    name = 'acme'\n\n"
        "def make(config):\n    return AcmeRecognizer()\n\n"
        "not_callable = 42\n"
    )
    dist_info = tmp_path / "acme_emotune-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-emotune\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[emotune.asr_engines]\nacme-cloud = acme_emotune:make\nacme-missing = acme_emotune_gone:make\n"
        "acme-bad = acme_emotune:not_callable\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(PROJECT_ROOT / "config.yml", asr={"engine": "acme-cloud"})
    assert create_recognizer(config.asr).name == "acme"
    with pytest.raises(ConfigError, match=r"acme-missing.*cannot be loaded"):
        create_recognizer(load_config(PROJECT_ROOT / "config.yml", asr={"engine": "acme-missing"}).asr)
    with pytest.raises(ConfigError, match=r"acme-bad.*not a factory"):
        create_recognizer(load_config(PROJECT_ROOT / "config.yml", asr={"engine": "acme-bad"}).asr)
    with pytest.raises(ConfigError, match=r"asr\.engine: .*unknown engine 'acme-typo'.*acme-cloud"):
        load_config(PROJECT_ROOT / "config.yml", asr={"engine": "acme-typo"})


def test_asr_transcribes_the_committed_sample(sphinx: PocketsphinxRecognizer) -> None:
    sample = load_sample_call()
    turn = sample.turns[1]  # "Dogs are sitting by the door", neutral
    assert turn.sample_rate == ASR_SAMPLE_RATE
    result = sphinx.transcribe(turn.audio)
    reference = set(turn.text.lower().split())  # dogs are sitting by the door
    assert len(reference & set(result.text.split())) >= 4, result.text
    assert result.audio_s == pytest.approx(turn.audio.shape[0] / ASR_SAMPLE_RATE)


def test_asr_through_an_8khz_phone_line(sphinx: PocketsphinxRecognizer) -> None:
    # The gateway's path: 8 kHz mu-law from the platform, upsampled to 16 kHz for the recogniser.
    # pocketsphinx's bundled model is wideband, so a phone line costs words (measured on this
    # sample: 6/6 words clean vs 4/6 over the line for turn 1); most words must survive.
    for turn in load_sample_call().turns[:2]:
        line = resample(decode_audio(encode_audio(resample(turn.audio, 16000, 8000), "mulaw"), "mulaw"), 8000, 16000)
        reference = set(turn.text.lower().split())
        heard = sphinx.transcribe(line).text
        assert len(reference & set(heard.split())) >= 3, heard


def test_asr_input_errors(sphinx: PocketsphinxRecognizer) -> None:
    audio = np.zeros(16000, dtype=np.float32)
    with pytest.raises(SampleRateError, match="16000 Hz"):
        sphinx.transcribe(audio, 8000)
    with pytest.raises(AudioError, match="mono"):
        sphinx.transcribe(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        sphinx.transcribe(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(AudioError, match="dtype"):
        sphinx.transcribe(np.zeros(16000, dtype=np.int32))
    assert sphinx.transcribe(np.zeros(100, dtype=np.int16)).text == ""  # too short to hold words
    with pytest.raises(ConfigError, match="en-US"):
        PocketsphinxRecognizer(language="de-DE")


def test_a_dead_asr_worker_fails_only_its_turn() -> None:
    """Killing a worker process mid-turn: that turn gets SpeechEngineError, the next one is served."""
    turn = load_sample_call().turns[0]
    recognizer = PocketsphinxRecognizer(workers=1)
    try:
        assert recognizer.transcribe(turn.audio).text  # workers up and decoding
        long_turn = np.tile(turn.audio, 8)  # ~14 s: decoding takes seconds, time to kill it
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(recognizer.transcribe, long_turn)
            time.sleep(0.5)
            for pid in recognizer.worker_pids():
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(SpeechEngineError, match="worker failed"):
                pending.result(timeout=30)
        assert recognizer.transcribe(turn.audio).text  # a fresh pool took over
    finally:
        recognizer.close()
