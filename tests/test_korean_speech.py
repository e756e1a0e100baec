"""The Korean deployment (issue 16): profiles, Korean speech in (Whisper ko, English identified per
turn), Korean speech out (espeak-ng ko, a plug-in voice), on real engines and a real gateway.

Rasa is left unreachable here (a refused port): a turn the gateway sends to the dialogue gets the
profile's Korean fallback reply at once, so these tests are about what reaches the bot and what the
caller hears; the Korean bots themselves run in tests/test_korean_demo.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import SecretStr
from test_asr_tts import median_pitch_hz
from test_call_flow import TOKEN, call_log, running, silence, stream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.devtools.emotune_ws_client import BotReply, EmotuneWsClient, Ready
from connectors.devtools.rasa_stack import BOTS
from connectors.gateway import Gateway
from connectors.speech.asr import WhisperRecognizer, whisper_language
from connectors.speech.asr_scoring import char_error_rate, read_numerals_korean, sino_korean
from connectors.speech.tts import EspeakSynthesizer, create_synthesizer
from connectors.tools.demo import KOREAN_SAMPLE_AUDIO, SAMPLE_AUDIO, load_sample_call, sample_for
from emotune.config import PROJECT_ROOT, EmotuneConfig, TonePolicy, load_config
from emotune.errors import ConfigError, NotBuiltError

CONFIG = PROJECT_ROOT / "config.yml"
KOREAN_PROFILES = ("ko_contact_center", "ko_in_car")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
PLUGIN_DIR = PROJECT_ROOT / "docs" / "examples" / "korean_voice_plugin"
REPLY_TEXT = "주문하신 상품은 내일 오후에 도착할 예정입니다."


def hangul_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(bool(HANGUL.match(c)) for c in letters) / max(1, len(letters))


# ---- profiles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", KOREAN_PROFILES)
def test_one_switch_selects_every_korean_piece(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(CONFIG, profile=profile)
    monkeypatch.setenv("EMOTUNE_PROFILE", profile)
    assert load_config(CONFIG).model_dump(mode="json") == config.model_dump(mode="json")  # env = argument
    assert config.profile == profile
    assert whisper_language(config.asr.language) == "ko" and config.asr.engine == "whisper"
    assert config.asr.alternative_languages == ["en"]
    assert config.rasa.bot == profile and config.rasa.bot in BOTS  # a Rasa project RasaStack can start
    english = load_config(CONFIG, profile=profile.removeprefix("ko_"))
    assert config.rasa.url != english.rasa.url  # its own Rasa, never the English bot's
    # The Korean-tuned variants: smart-turn for call-center density, Whisper base for one car's accuracy.
    variant = {"ko_contact_center": "emotune-ser-v2-st-ko", "ko_in_car": "emotune-ser-v2-wb-ko"}[profile]
    assert config.model_path() == PROJECT_ROOT / "models" / variant
    assert config.sidecar_path().is_file()
    assert config.tts.engine == "espeak-ng" and config.tts.voice == "ko"
    assert sample_for(config) == KOREAN_SAMPLE_AUDIO
    phrases = [config.rasa.fallback_reply, config.gateway.busy_reply, config.asr.other_language_reply or "",
               config.turn_taking.reprompt, config.turn_taking.goodbye, config.turn_taking.max_call_message]
    for phrase in phrases:
        assert hangul_share(phrase) > 0.9, phrase
    assert {"네", "예"} <= set(config.turn_taking.barge_in_ignore_words)


def test_the_in_car_profile_never_promises_a_human() -> None:
    config = load_config(CONFIG, profile="ko_in_car")
    assert config.rasa.handoff_after_fallbacks == 0
    assert config.turn_taking.max_call_action == "goodbye"
    spoken = [config.rasa.fallback_reply, config.asr.other_language_reply or "", config.gateway.busy_reply,
              config.turn_taking.reprompt, config.turn_taking.goodbye, config.turn_taking.max_call_message]
    assert not [phrase for phrase in spoken if "상담원" in phrase]  # 상담원: a (human) agent
    contact = load_config(CONFIG, profile="ko_contact_center")
    # The reply offers keypad 0 for a colleague: only true while 0 is mapped to the hand-off request.
    assert "0번" in (contact.asr.other_language_reply or "") and contact.turn_taking.dtmf["0"] == "/request_human"


def test_bad_profile_and_language_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["profiles"]["ko_callcenter"] = {}
    typo = tmp_path / "typo.yml"
    typo.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"profiles\.ko_callcenter: unknown profile.*ko_contact_center"):
        load_config(typo)
    monkeypatch.setenv("EMOTUNE_PROFILE", "ko_call_center")
    with pytest.raises(ConfigError, match="profile"):
        load_config(CONFIG)
    monkeypatch.delenv("EMOTUNE_PROFILE")
    with pytest.raises(ConfigError, match="fixed language"):
        load_config(CONFIG, profile="ko_contact_center", asr={"language": "auto", "alternative_languages": ["en"]})
    with pytest.raises(ConfigError, match="pocketsphinx"):
        load_config(None, asr={"engine": "pocketsphinx", "alternative_languages": ["ko"]})
    with pytest.raises(ConfigError, match=r"rasa\.bot"):
        load_config(None, rasa={"bot": "../contact_center"})
    with pytest.raises(ConfigError, match="language tag"):
        WhisperRecognizer(language="ko-KR", alternative_languages=["english!"])


# ---- speech out ------------------------------------------------------------------------------------
def test_the_korean_voice_speaks_each_tone() -> None:
    voice = EspeakSynthesizer("ko")
    prosody = TonePolicy().prosody
    standard, calm = (voice.synthesize(REPLY_TEXT, prosody[tone]) for tone in ("standard", "calm"))
    assert standard.duration_s > 2.0  # a real sentence, not a beep (an unknown voice gives no audio)
    assert calm.duration_s > 1.1 * standard.duration_s  # rate 0.85
    assert median_pitch_hz(calm) < median_pitch_hz(standard)  # -2 semitones
    rms = [float(np.sqrt(np.mean(s.samples**2))) for s in (standard, calm)]
    assert rms[1] == pytest.approx(rms[0] * 10 ** (-3 / 20), rel=0.25)  # -3 dB


# ---- speech in: Whisper in Korean, English identified per turn ------------------------------------
@pytest.fixture(scope="module")
def whisper_ko() -> Iterator[WhisperRecognizer]:
    recognizer = WhisperRecognizer(language="ko-KR", alternative_languages=["en"], workers=1)
    yield recognizer
    recognizer.close()


def test_whisper_hears_a_korean_caller(whisper_ko: WhisperRecognizer) -> None:
    # (How intelligible espeak-ng's own ko voice is, is measured in benchmarks/bench_asr.py: poorly;
    # Whisper even takes it for English. The caller's speech is what the line must recognise.)
    for caller in load_sample_call(KOREAN_SAMPLE_AUDIO).turns[::3]:  # a neutral and an angry turn
        heard = whisper_ko.transcribe(caller.audio)
        assert heard.language == "ko" and not heard.other_language, heard
        assert char_error_rate(caller.text, read_numerals_korean(heard.text)) < 0.3, heard.text


def test_an_english_or_mixed_turn_on_the_korean_line(whisper_ko: WhisperRecognizer) -> None:
    english = load_sample_call(SAMPLE_AUDIO).turns[1]  # RAVDESS: "Dogs are sitting by the door"
    heard = whisper_ko.transcribe(english.audio)
    assert heard.language == "en" and heard.other_language
    assert {"sitting", "door"} <= set(re.findall(r"[a-z]+", heard.text.lower())), heard.text
    # Mixed: a Korean sentence then an English one in one turn. Whichever language wins, the turn is
    # decoded in one of the line's two languages, gives words and never fails.
    korean = load_sample_call(KOREAN_SAMPLE_AUDIO).turns[0]
    gap = np.zeros(8000, dtype=np.float32)
    mixed = whisper_ko.transcribe(np.concatenate([korean.audio, gap, english.audio]))
    assert mixed.language in ("ko", "en") and mixed.other_language == (mixed.language == "en")
    assert mixed.text
    assert whisper_ko.transcribe(silence(1.0)).text == ""  # silence: no words


def test_a_language_whisper_does_not_know_is_refused_before_any_worker_starts() -> None:
    with pytest.raises(ConfigError, match="has no language 'xx'"):
        WhisperRecognizer(language="ko-KR", alternative_languages=["xx"], workers=1)
    with pytest.raises(ConfigError, match="has no language 'zz'"):
        WhisperRecognizer(language="zz")


def test_korean_numerals_read_like_the_transcripts() -> None:
    assert [sino_korean(n) for n in (5, 10, 17, 20, 110, 16000, 12345)] == [
        "오", "십", "십칠", "이십", "백십", "만육천", "만이천삼백사십오"]
    assert read_numerals_korean("5월 17일, 16,000명") == "오월 십칠일, 만육천명"
    with pytest.raises(ValueError, match="negative"):
        sino_korean(-1)


# ---- the gateway on the Korean profile ------------------------------------------------------------
def on_test_line(config: EmotuneConfig) -> EmotuneConfig:
    """The caller's token, the words kept in the call log, and no hand-off for Rasa being absent."""
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.log_level = "DEBUG"  # the call log keeps the words (redacted otherwise)
    config.rasa.timeout_s = 1.0
    config.rasa.handoff_after_fallbacks = 0
    return config


async def open_call(gateway: Gateway, call_id: str) -> tuple[ClientConnection, EmotuneWsClient]:
    """A call on our protocol that names the gateway's (Korean) profile in its start."""
    client = EmotuneWsClient()
    ws = await connect(f"ws://127.0.0.1:{gateway.port}/v1/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    await ws.send(client.start(call_id=call_id, profile=gateway.config.profile))
    assert isinstance(client.receive_text(str(await asyncio.wait_for(ws.recv(), 10)))[0], Ready)
    return ws, client


async def say(ws: ClientConnection, client: EmotuneWsClient, audio: np.ndarray, then_silence_s: float) -> None:
    """Speak 16 kHz audio in real time, then keep the line open with silence (as phones do)."""
    await stream(ws, client, np.concatenate([audio, silence(then_silence_s)]))


async def next_reply(ws: ClientConnection, client: EmotuneWsClient, timeout_s: float) -> tuple[BotReply, int]:
    """The bot's next reply and the bytes of its audio that followed it (until the audio stops)."""
    reply: BotReply | None = None
    audio_bytes = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                message = await ws.recv(decode=None)
                if isinstance(message, bytes):
                    audio_bytes += len(message)
                    if reply is not None and audio_bytes > 16000:
                        break
                    continue
                for event in client.receive_text(message):
                    if isinstance(event, BotReply) and reply is None:
                        reply = event
    assert reply is not None, "the bot never answered"
    return reply, audio_bytes


async def test_an_english_caller_on_the_korean_line_is_answered_in_korean(tmp_path: Path) -> None:
    config = load_config(CONFIG, profile="ko_contact_center")
    config.asr.workers = 1
    english = load_sample_call(SAMPLE_AUDIO).turns[1]
    korean = load_sample_call(KOREAN_SAMPLE_AUDIO).turns[0]
    async with running(on_test_line(config), tmp_path) as gateway:
        ws, client = await open_call(gateway, "ko-english-caller")
        speaking = asyncio.create_task(say(ws, client, english.audio, then_silence_s=25.0))
        reply, audio_bytes = await next_reply(ws, client, timeout_s=25.0)
        assert reply.text == config.asr.other_language_reply and audio_bytes > 16000  # spoken, in Korean
        speaking.cancel()
        speaking = asyncio.create_task(say(ws, client, korean.audio, then_silence_s=25.0))
        reply, _ = await next_reply(ws, client, timeout_s=30.0)
        assert reply.text == config.rasa.fallback_reply  # a Korean turn goes to the (absent) Korean bot
        speaking.cancel()
        with contextlib.suppress(ConnectionClosed):
            await ws.close()
    log = call_log(tmp_path)
    other = [r for r in log if r["type"] == "turn_other_language"]
    assert len(other) == 1 and other[0]["language"] == "en", other
    assert "door" in other[0]["caller_text"].lower()
    turns = [r for r in log if r["type"] == "turn"]
    assert len(turns) == 1 and hangul_share(turns[0]["caller_text"]) > 0.8 and turns[0]["fallback"], turns
    assert not [r for r in log if r["type"] == "turn_failed"]


def install_example_voice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install docs/examples/korean_voice_plugin as pip would (its module on sys.path, its entry point
    in a dist-info), with espeak-ng's ko voice as the vendor's command; returns the SSML log it keeps."""
    site = tmp_path / "site"
    dist_info = site / "acme_korean_voice-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    shutil.copy(PLUGIN_DIR / "acme_korean_voice.py", site / "acme_korean_voice.py")
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-korean-voice\nVersion: 0.1.0\n")
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"]["emotune.tts_engines"]
    (dist_info / "entry_points.txt").write_text(
        "[emotune.tts_engines]\n" + "".join(f"{name} = {target}\n" for name, target in declared.items()))
    monkeypatch.syspath_prepend(str(site))
    ssml_log = tmp_path / "vendor_ssml.log"
    monkeypatch.setenv("ACME_TTS_COMMAND",
                       f"sh -c 'tee -a {ssml_log} | espeak-ng -m -v \"$0\" --stdout --stdin' {{voice}}")
    return ssml_log


async def test_a_plugin_voice_selected_by_the_profile_speaks_for_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssml_log = install_example_voice(tmp_path, monkeypatch)
    greeting = "안녕하세요, 이모튠 고객센터입니다. 무엇을 도와드릴까요?"
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    profile = data["profiles"]["ko_contact_center"]
    profile["tts"] = {"engine": "acme-korean", "voice": "ko"}  # the operator's one change
    profile["turn_taking"] = {**profile["turn_taking"], "greeting": greeting}
    profile["asr"] = {**profile["asr"], "engine": "none"}  # the greeting needs no recogniser
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("EMOTUNE_PROFILE", "ko_contact_center")
    config = load_config(path)
    assert config.tts.engine == "acme-korean"
    async with running(on_test_line(config), tmp_path) as gateway:
        assert gateway.services.synthesizer.name == "acme-korean"
        ws, client = await open_call(gateway, "ko-plugin-voice")
        speaking = asyncio.create_task(say(ws, client, silence(1.0), then_silence_s=10.0))
        reply, audio_bytes = await next_reply(ws, client, timeout_s=15.0)
        speaking.cancel()
        with contextlib.suppress(ConnectionClosed):
            await ws.close()
    assert reply.text == greeting and audio_bytes > 16000
    spoken = ssml_log.read_text(encoding="utf-8")
    assert greeting in spoken and "<prosody" in spoken  # the vendor got the text with the tone's prosody
    monkeypatch.delenv("ACME_TTS_COMMAND")
    with pytest.raises(NotBuiltError, match="ACME_TTS_COMMAND"):
        create_synthesizer(config.tts)
