"""The gateway's own hand-off summaries (issue 16): English by default, in the profile's language on
the Korean profiles (``gateway.handoff_summaries``), refused at load when a template cannot be filled,
and carried to the agent by a real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from test_call_flow import TOKEN, running  # a gateway whose Rasa port refuses: every turn falls back
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.devtools.audiohook_client import AudioHookClient
from connectors.devtools.emotune_ws_client import EmotuneWsClient, Handoff, Ready
from connectors.gateway import Gateway
from connectors.gateway.call import CallPipeline
from connectors.protocols.audiohook import AudioHookServer
from connectors.protocols.base import EscalationTracker
from emotune.config import PROJECT_ROOT, EmotuneConfig, HandoffSummaries, load_config
from emotune.errors import ConfigError

CONFIG = PROJECT_ROOT / "config.yml"


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# -- the rule ----------------------------------------------------------------------------------------
def test_english_defaults_are_the_sentences_the_gateway_always_wrote() -> None:
    summaries = load_config(CONFIG).gateway.handoff_summaries
    assert summaries.call_ended_summary("max_call_length") == "Call ended by the bot: max call length."
    assert summaries.call_ended_summary("caller_silent") == "Call ended by the bot: caller silent."
    assert summaries.fallbacks_summary(2, "Rasa timed out") == "The bot could not answer 2 turns in a row (Rasa timed out)."
    assert summaries.escalation_summary("caller", ["sad", "angry", "angry"], 3) == (
        "The caller sounded angry, sad in 3 consecutive analysis windows."
    )


def test_korean_contact_center_summaries_read_as_korean() -> None:
    summaries = load_config(CONFIG, profile="ko_contact_center").gateway.handoff_summaries
    assert summaries.call_ended_summary("max_call_length") == "봇이 통화를 종료했습니다. 사유: 최대 통화 시간 초과."
    assert summaries.call_ended_summary("caller_silent") == "봇이 통화를 종료했습니다. 사유: 고객 무응답."
    assert summaries.fallbacks_summary(2, "Rasa timed out") == "봇이 2턴 연속 답변하지 못했습니다(Rasa timed out)."
    assert summaries.escalation_summary("caller", ["angry", "sad", "angry"], 3) == (
        "고객 음성에서 3개 분석 구간 연속으로 화남, 슬픔 감정이 감지되었습니다."
    )
    assert summaries.escalation_summary("agent", ["angry"], 4).startswith("상담원 음성에서 4개")


def test_korean_in_car_ends_calls_in_korean_about_the_driver() -> None:
    summaries = load_config(CONFIG, profile="ko_in_car").gateway.handoff_summaries
    assert summaries.call_ended_summary("caller_silent") == "봇이 통화를 종료했습니다. 사유: 운전자 무응답."
    assert summaries.call_ended_summary("max_call_length") == "봇이 통화를 종료했습니다. 사유: 최대 대화 시간 초과."


def test_a_word_not_listed_is_inserted_as_its_label() -> None:
    summaries = load_config(CONFIG, profile="ko_contact_center").gateway.handoff_summaries
    assert summaries.escalation_summary("supervisor", ["angry", "fearful"], 2) == (
        "supervisor 음성에서 2개 분석 구간 연속으로 화남, fearful 감정이 감지되었습니다."
    )
    assert summaries.call_ended_summary("line_dropped") == "봇이 통화를 종료했습니다. 사유: line_dropped."


@pytest.mark.parametrize(
    ("field", "template", "fragment"),
    [
        ("call_ended", "Call ended: {why}.", "unknown placeholder {why}"),
        ("fallbacks", "Failed {turns} times ({reason}).", "unknown placeholder {reason}"),  # call_ended's, not its
        ("escalation", "The {party} sounded {emotions} for {}.", "unknown placeholder {}"),
        ("escalation", "The {party.title} sounded {emotions}.", "unknown placeholder {party.title}"),
        ("call_ended", "Call ended: {reason.", "bad braces"),
        ("call_ended", "Call ended} {reason}", "bad braces"),
        ("call_ended", "Call ended: {reason:d}", "cannot be filled in"),
    ],
)
def test_a_template_the_gateway_cannot_fill_is_refused_naming_the_field(
    tmp_path: Path, field: str, template: str, fragment: str
) -> None:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["gateway"]["handoff_summaries"] = {field: template}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    (problem,) = info.value.problems
    assert problem.startswith(f"gateway.handoff_summaries.{field}: "), problem
    assert fragment in problem, problem


def test_the_korean_profile_is_checked_too(tmp_path: Path) -> None:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["profiles"]["ko_contact_center"]["gateway"]["handoff_summaries"]["fallbacks"] = "{turns}턴 {이유}"
    with pytest.raises(ConfigError, match=r"gateway\.handoff_summaries\.fallbacks: .*unknown placeholder \{이유\}"):
        load_config(_write(tmp_path, data), profile="ko_contact_center")
    load_config(_write(tmp_path, data))  # the English profile does not use it


def test_literal_braces_are_allowed() -> None:
    summaries = HandoffSummaries(call_ended="{{bot}} ended the call: {reason}.")
    assert summaries.call_ended_summary("caller_silent") == "{bot} ended the call: caller silent."


async def test_a_call_that_picks_the_korean_profile_gets_its_summaries(tmp_path: Path) -> None:
    """An English gateway serving profiles: a call started on a Korean profile hands off in Korean."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    korean = data["profiles"]["ko_contact_center"]["gateway"]["handoff_summaries"]
    data["profiles"] = {"in_car": {"gateway": {"handoff_summaries": korean}}}  # nothing else differs
    config = load_config(CONFIG)
    config.asr.engine = "none"
    gateway = Gateway(config, log_dir=tmp_path, config_path=_write(tmp_path, data))
    own = (await gateway.profiles.services_for(config.profile)).config.gateway.handoff_summaries
    per_call = (await gateway.profiles.services_for("in_car")).config.gateway.handoff_summaries
    assert own.call_ended_summary("caller_silent") == "Call ended by the bot: caller silent."
    assert per_call.call_ended_summary("caller_silent") == "봇이 통화를 종료했습니다. 사유: 고객 무응답."

# -- a real gateway carries the Korean summary to the agent -----------------------------------------------
def korean_config(**turn_taking: Any) -> EmotuneConfig:
    config = load_config(CONFIG, profile="ko_contact_center")
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.log_transcripts = True  # the handoff record keeps the summary (redacted otherwise)
    config.asr.engine = "none"  # text turns: these tests are about the hand-off, not speech
    config.tts.engine = "none"
    config.rasa.timeout_s = 1.0
    config.rasa.replicas = []
    for name, value in turn_taking.items():
        setattr(config.turn_taking, name, value)
    return config


async def open_call(gateway: Gateway, call_id: str) -> tuple[ClientConnection, EmotuneWsClient]:
    client = EmotuneWsClient()
    ws = await connect(f"ws://127.0.0.1:{gateway.port}/v1/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    await ws.send(client.start(call_id=call_id, profile="ko_contact_center"))
    assert isinstance(client.receive_text(str(await asyncio.wait_for(ws.recv(), 10)))[0], Ready)
    return ws, client


async def handoff_of(ws: ClientConnection, client: EmotuneWsClient, timeout_s: float = 15.0) -> Handoff:
    async with asyncio.timeout(timeout_s):
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                parse = client.receive_bytes if isinstance(message, bytes) else client.receive_text
                for event in parse(message):  # type: ignore[arg-type]
                    if isinstance(event, Handoff):
                        return event
    raise AssertionError("no handoff message")


def handoff_record(tmp_path: Path, call_id: str) -> dict[str, Any]:
    lines = (tmp_path / f"{call_id}.jsonl").read_text(encoding="utf-8").splitlines()
    return next(r for r in map(json.loads, lines) if r["type"] == "handoff")


async def test_repeated_fallbacks_hand_off_with_a_korean_summary(tmp_path: Path) -> None:
    config = korean_config()
    assert config.rasa.handoff_after_fallbacks == 2
    async with running(config, tmp_path) as gateway:
        ws, client = await open_call(gateway, "ko-fallbacks")
        async with ws:
            for _ in range(2):
                await ws.send(client.text("택배가 어디쯤 왔나요"))
            handoff = await handoff_of(ws, client)
    assert handoff.reason == "dialogue_unavailable"
    assert handoff.summary.startswith("봇이 2턴 연속 답변하지 못했습니다("), handoff.summary
    assert handoff.context is not None and handoff.context["summary"] == handoff.summary
    assert handoff_record(tmp_path, "ko-fallbacks")["context"]["summary"] == handoff.summary


async def test_max_call_length_hands_off_with_a_korean_summary(tmp_path: Path) -> None:
    config = korean_config(max_call_s=1.0)
    assert config.turn_taking.max_call_action == "handoff"
    async with running(config, tmp_path) as gateway:
        ws, client = await open_call(gateway, "ko-long")
        async with ws:
            handoff = await handoff_of(ws, client)
    assert (handoff.reason, handoff.summary) == ("max_call_length", "봇이 통화를 종료했습니다. 사유: 최대 통화 시간 초과.")
    assert handoff_record(tmp_path, "ko-long")["context"]["summary"] == handoff.summary


async def test_audiohook_escalation_summary_is_korean(tmp_path: Path) -> None:
    """Monitor-only calls: the escalation rule fires beside the AudioHook core; the gateway's summary of
    it (call log and the emotune.handoff entity for agent assist) is in the profile's language."""
    config = korean_config()
    async with running(config, tmp_path) as gateway:
        core = AudioHookServer(escalation=EscalationTracker.from_config(config.escalation))
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        pipeline = CallPipeline(gateway.services, core, send, "audiohook")
        client = AudioHookClient()
        for event in core.receive_text(client.open()):
            await pipeline.handle(event)
        caller = pipeline.parties["caller"]
        for second in range(config.escalation.streak_turns):
            await pipeline.on_emotion(caller, {"label": "angry", "confidence": 0.9, "start_s": second,
                                               "end_s": second + 2.0})  # fmt: skip
        await pipeline.finish("test over")
    lines = (tmp_path / f"{pipeline.call_id}.jsonl").read_text(encoding="utf-8").splitlines()
    (escalation,) = [r for r in map(json.loads, lines) if r["type"] == "escalation"]
    expected = f"고객 음성에서 {config.escalation.streak_turns}개 분석 구간 연속으로 화남 감정이 감지되었습니다."
    assert escalation["summary"] == expected
    entities = [e for m in sent if isinstance(m, str) for e in json.loads(m).get("parameters", {}).get("entities", [])]
    assert any(e["type"] == "emotune.handoff" and e["data"]["summary"] == expected for e in entities), entities
