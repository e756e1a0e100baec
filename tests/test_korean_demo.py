"""The Korean demo end to end (issue 16): `make demo PROFILE=ko_contact_center` as a test.

The real system on the Korean profile: the Korean Rasa bot (its quick CI model) and the action
server, the gateway with Whisper in Korean, the Korean emotion model and espeak-ng's ko voice, and
the committed Korean sample call played through the Twilio Media Streams protocol (4x real time).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_korean_speech import hangul_share

from connectors.speech.asr_scoring import char_error_rate, read_numerals_korean
from connectors.tools.demo import KOREAN_SAMPLE_AUDIO, load_sample_call, run_demo
from connectors.tools.report import read_call_log
from emotune.config import PROJECT_ROOT, load_config

pytestmark = [pytest.mark.rasa, pytest.mark.slow]


async def test_the_korean_demo_call_runs_through_the_whole_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(PROJECT_ROOT / "config.yml", profile="ko_contact_center")
    result = await run_demo(config, speed=4.0, ci_bot=True, reports_dir=tmp_path)
    printed = capsys.readouterr().out
    assert "Profile ko_contact_center: bot ko_contact_center" in printed and "ko_ema" in printed
    log = read_call_log(Path(result["log"]))
    turns = [r for r in log if r["type"] == "turn"]
    sample = load_sample_call(KOREAN_SAMPLE_AUDIO)
    # Every caller turn was heard in Korean and answered by the Korean bot, in Korean (no fallback).
    kinds = [r["type"] for r in log]
    # Six caller turns, unless the anger streak hands the call to a human first (after turn 5 when
    # measured: turns 1-2 neutral, 3-5 angry 0.91-0.96).
    assert len(turns) == len(sample.turns) or ("transfer_requested" in kinds and len(turns) >= 3), kinds
    for turn in turns:
        assert hangul_share(turn["caller_text"]) > 0.8, turn["caller_text"]
        assert turn["bot_text"] and hangul_share(turn["bot_text"]) > 0.8, turn["bot_text"]
        assert not turn["fallback"], turn
        assert turn["emotion"] is not None and turn["emotion"]["label"] in config.model.labels
        assert f"turn {turn['turn']}" in printed
    # Whisper through the phone line: the words of the first turns are close to the transcripts.
    heard = " ".join(t["caller_text"] for t in turns[:2])
    said = " ".join(t.text for t in sample.turns[:2])
    assert char_error_rate(said, read_numerals_korean(heard)) < 0.3, heard
    assert not [r for r in log if r["type"] in ("turn_failed", "asr_failed", "turn_other_language")]
    # A hand-off's transfer: Twilio's own voice says the Korean announcement with a Korean <Say> voice.
    for transfer in [r for r in log if r["type"] == "transfer_requested"]:
        assert '<Say language="ko-KR">' in transfer["twiml"] and "상담원" in transfer["twiml"], transfer["twiml"]
    html = Path(result["report"]).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and turns[0]["caller_text"] in html
    assert result["caller"].bot_audio_s > 3.0  # the caller heard the bot's Korean voice
