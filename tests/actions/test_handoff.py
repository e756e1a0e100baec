"""action_handoff: reasons, payload for the human agent, streak reset, operator opt-out."""

from __future__ import annotations

from tracker_fixtures import build_tracker, emotion_metadata, run, slot_values

from actions.handoff import ActionHandoff


def test_sustained_anger_handoff_payload(cc_domain: dict) -> None:
    angry = emotion_metadata("angry", streak_turns=2)
    tracker = build_tracker(
        [("my parcel is late", "check_delivery", angry), ("this is ridiculous", "complain", angry)],
        slots={"tone": "calm", "negative_streak": 2.0},
    )
    messages, events = run(ActionHandoff(), tracker, cc_domain)
    assert len(messages) == 1
    assert messages[0]["response"] == "utter_handoff"
    custom = messages[0]["custom"]
    assert custom["tone"] == "calm"
    handoff = custom["handoff"]
    assert handoff["reason"] == "sustained_anger"
    assert [h["label"] for h in handoff["emotion_history"]] == ["angry", "angry"]
    assert handoff["summary"].startswith("Caller sounded angry for 2 turns in a row. Topic: complaint.")
    assert '"this is ridiculous"' in handoff["summary"]
    assert slot_values(events) == {"negative_streak": 0.0}


def test_requested_handoff(cc_domain: dict) -> None:
    tracker = build_tracker(
        [
            ("where is my refund", "request_refund", emotion_metadata("neutral")),
            ("let me talk to a person", "request_human", emotion_metadata("neutral")),
        ],
        slots={"tone": "standard"},
    )
    messages, _ = run(ActionHandoff(), tracker, cc_domain)
    handoff = messages[0]["custom"]["handoff"]
    assert handoff["reason"] == "requested"
    assert handoff["summary"].startswith("Caller asked for a human. Topic: refund.")


def test_request_refused_when_operator_disabled_it(cc_domain: dict) -> None:
    metadata = emotion_metadata("neutral", on_request=False)
    tracker = build_tracker([("agent", "request_human", metadata)], slots={"tone": "warm"})
    messages, events = run(ActionHandoff(), tracker, cc_domain)
    assert messages[0]["response"] == "utter_handoff_unavailable"
    assert messages[0]["custom"] == {"tone": "warm"}
    assert events == []


def test_handoff_without_any_emotion_metadata(cc_domain: dict) -> None:
    tracker = build_tracker([("human please", "request_human", None)])
    messages, _ = run(ActionHandoff(), tracker, cc_domain)
    assert messages[0]["custom"]["tone"] == "standard"
    assert messages[0]["custom"]["handoff"]["emotion_history"] == []


def test_korean_bot_briefs_the_agent_in_korean() -> None:
    from tracker_fixtures import load_domain

    angry = emotion_metadata("angry", streak_turns=2)
    tracker = build_tracker(
        [("주문한 물건이 아직 안 왔어요", "check_delivery", angry), ("정말 너무하네요", "complain", angry)],
        slots={"tone": "calm", "negative_streak": 2.0, "language": "ko", "order_number": "482107"},
    )
    messages, _ = run(ActionHandoff(), tracker, load_domain("ko_contact_center"))
    handoff = messages[0]["custom"]["handoff"]
    assert handoff["reason"] == "sustained_anger"
    assert handoff["summary"] == (
        '고객이 2턴 연속 화난 상태였습니다. 문의: 불만 접수. 확인된 정보: 주문 번호 482107. '
        '마지막 발화: "정말 너무하네요". 최근 감정: 화난, 화난.'
    )
    # The machine-readable part stays language-neutral for the agent desktop.
    assert handoff["intent"] == "complain" and handoff["slots"]["order_number"] == "482107"


def test_english_summary_words_without_an_emotion_history(cc_domain: dict) -> None:
    tracker = build_tracker([("this is useless", "complain", None)], slots={"negative_streak": 3.0})
    messages, _ = run(ActionHandoff(), tracker, cc_domain)
    assert messages[0]["custom"]["handoff"]["summary"].startswith("Caller sounded upset for 3 turns in a row.")
