"""The Korean bots: the kiwipiepy tokenizer component (real Kiwi, real Rasa messages), its defined
behaviour on text it cannot analyse, Korean numbers and yes/no, and the actions' Korean template
values against the real database. The English bots' behaviour is covered by the other tests."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import pytest
from backend_fixtures import form_tracker
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from tracker_fixtures import build_tracker, load_domain

from actions.backend import Repository
from actions.contact_center import (
    ActionAskOrderNumber,
    ActionAskRefundConfirmed,
    ActionSubmitComplaint,
    ActionSubmitOrderStatus,
    ValidateOrderStatusForm,
    ValidateRefundForm,
    complaint_category_of,
)
from actions.in_car import ActionPlayMusic, ActionSetClimate, ValidateDestinationForm
from actions.language import KOREAN, language_of
from actions.numbers import digits_in
from bot.components.kiwi_tokenizer import (
    KiwiTokenizer,
    UnanalysableTextFallback,
    has_analysable_content,
    morpheme_spans,
)

KO_CC = load_domain("ko_contact_center")
KO_CAR = load_domain("ko_in_car")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def run(action: Action, tracker: Tracker, domain: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    dispatcher = CollectingDispatcher()
    events = list(asyncio.run(action.run(dispatcher, tracker, domain)))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def korean(**slots: Any) -> dict[str, Any]:
    """Slots of a Korean-bot tracker (the domain's initial language)."""
    return {"language": "ko", **slots}


def rendered(domain: dict[str, Any], message: dict[str, Any]) -> str:
    """The standard variation's text with the action's template values, as Rasa fills it."""
    template = domain["responses"][message["response"]][0]["text"]
    missing = set(_PLACEHOLDER.findall(template)) - set(message)
    assert not missing, f"{message['response']}: the action fills no {missing}"
    return template.format(**{k: message[k] for k in _PLACEHOLDER.findall(template)})


# ----------------------------------------------------------------------------- the tokenizer
def tokens_of(text: str) -> list[Any]:
    message = Message(data={TEXT: text})
    return KiwiTokenizer(KiwiTokenizer.get_default_config()).tokenize(message, TEXT)


def test_particles_come_off_the_noun() -> None:
    tokens = tokens_of("엄마한테 전화해 줘")
    texts = [t.text for t in tokens]
    assert texts[:2] == ["엄마", "한테"], texts
    # Every token is a piece of the original text at its offsets (entity annotations stay aligned).
    assert all("엄마한테 전화해 줘"[t.start : t.end] == t.text for t in tokens)


def test_lemmas_are_dictionary_forms_and_tokens_never_overlap() -> None:
    text = "주문 번호를 알려 줬어요"
    tokens = tokens_of(text)
    assert [t.text for t in tokens][:3] == ["주문", "번호", "를"]
    assert all(a.end <= b.start for a, b in zip(tokens, tokens[1:], strict=False))
    assert all(text[t.start : t.end] == t.text for t in tokens)
    assert "주" in [t.lemma for t in tokens]  # "줬" is 주 + 었: the stem is the lemma


def test_entity_boundaries_match_tokens() -> None:
    text = "강남역으로 가 줘"
    spans = morpheme_spans(text)
    starts, ends = {s for s, _, _ in spans}, {e for _, e, _ in spans}
    assert 0 in starts and len("강남역") in ends  # "[강남역](destination)으로" is annotatable


@pytest.mark.parametrize("text", ["😀😀", "🙏", "where is my parcel", "제 order number는 482107이에요", "?!", "   "])
def test_text_kiwi_cannot_analyse_does_not_crash(text: str) -> None:
    tokens = tokens_of(text)
    assert all(text[t.start : t.end] == t.text for t in tokens)
    assert bool(tokens) == bool(text.strip())  # at least one token for any non-blank message


def _classified(text: str, intent: str = "greet") -> Message:
    message = Message(data={TEXT: text, INTENT: {"name": intent, "confidence": 0.93},
                            INTENT_RANKING_KEY: [{"name": intent, "confidence": 0.93}]})  # fmt: skip
    return UnanalysableTextFallback({}).process([message])[0]


@pytest.mark.parametrize("text", ["😀😀", "where is my parcel", "?!"])
def test_no_korean_and_no_digit_is_nlu_fallback(text: str) -> None:
    message = _classified(text)
    assert message.get(INTENT) == {"name": "nlu_fallback", "confidence": 1.0}
    assert message.get(INTENT_RANKING_KEY)[0]["name"] == "nlu_fallback"
    assert message.get(INTENT_RANKING_KEY)[1]["name"] == "greet"  # what DIET said stays visible


@pytest.mark.parametrize("text", ["안녕하세요", "482107#", "제 order number는 482107이에요", "환불 please"])
def test_korean_or_digits_keep_the_classifier_intent(text: str) -> None:
    assert has_analysable_content(text)
    assert _classified(text, "inform").get(INTENT)["name"] == "inform"


def test_fallback_response_asks_again_in_korean() -> None:
    texts = [v["text"] for v in KO_CC["responses"]["utter_fallback"]]
    assert all(re.search(r"[가-힣]", t) and re.search("다시|한 번 더", t) for t in texts)


# ----------------------------------------------------------------------------- numbers, yes / no
@pytest.mark.parametrize(
    ("said", "digits"),
    [("사 팔 이 일 공 칠", "482107"), ("사팔이일공칠번이요", "482107"), ("주문 번호는 482107이에요", "482107"),
     ("482107이요", "482107"), ("계정 번호 사 팔 이 일 삼 칠 공 육", "48213706"), ("이 번호요", ""),
     ("주문 번호는 사 팔 이 이 삼 삼이에요", "482233"), ("four eight two one oh seven", "482107")],
)  # fmt: skip
def test_korean_digit_words(said: str, digits: str) -> None:
    assert digits_in(said) == digits


@pytest.mark.parametrize(("said", "confirmed"), [("네 좋아요", True), ("응", True), ("좋아요 해 주세요", True),
                                                 ("아니요", False), ("싫어요", False), ("예약이요", None)])  # fmt: skip
def test_korean_yes_and_no_at_a_confirmation(backend: Repository, said: str, confirmed: bool | None) -> None:
    # NLU gave another intent: the words decide (as "yes"/"no" do on the English bot).
    tracker = form_tracker(said, "inform", form="refund_form", requested="refund_confirmed",
                           slots=korean(order_number="482107"), extracted={"refund_confirmed": said})  # fmt: skip
    assert run(ValidateRefundForm(), tracker, KO_CC)[1]["refund_confirmed"] is confirmed


@pytest.mark.parametrize(("said", "category"), [("택배가 안 왔어요", "delivery"), ("물건이 파손돼서 왔어요", "product"),
                                                ("요금이 잘못 청구됐어요", "billing"), ("상담원이 무례했어요", "service"),
                                                ("그냥 기분이 나빠요", None)])  # fmt: skip
def test_korean_complaint_categories(said: str, category: str | None) -> None:
    assert complaint_category_of(said) == category


# ----------------------------------------------------------------------------- Korean template values
def test_language_comes_from_the_bot() -> None:
    assert KO_CC["slots"]["language"]["initial_value"] == "ko" == KO_CAR["slots"]["language"]["initial_value"]
    assert language_of(build_tracker([("hi", "greet", None)])) == "en"  # English bots have no language slot
    assert language_of(build_tracker([("안녕", "greet", None)], slots={"language": "ko"})) == "ko"
    assert language_of(build_tracker([("hi", "greet", None)], slots={"language": "xx"})) == "en"


def test_korean_dates_and_amounts() -> None:
    assert KOREAN.day_words(date(2026, 12, 12)) == "12월 12일 토요일"
    assert KOREAN.money(5999) == "59.99파운드"


def test_korean_order_status_reads_the_backend_in_korean(backend: Repository) -> None:
    tracker = form_tracker("482233", "inform", form=None, slots=korean(order_number="482233"))
    (reply,), _ = run(ActionSubmitOrderStatus(), tracker, KO_CC)
    stored = backend.order("482233")
    assert stored is not None and stored.expected_on is not None
    assert reply["response"] == "utter_order_shipped"
    assert reply["expected_on"] == KOREAN.day_words(stored.expected_on)
    text = rendered(KO_CC, reply)
    assert "주문 4 8 2 2 3 3" in text and f"{stored.expected_on.day}일" in text and stored.carrier in text


def test_korean_refund_question_states_the_amount(backend: Repository) -> None:
    tracker = form_tracker("482107", "inform", form="refund_form", requested="order_number",
                           slots=korean(), extracted={"order_number": "482107"})  # fmt: skip
    slots = run(ValidateRefundForm(), tracker, KO_CC)[1]
    ask = form_tracker("482107", "inform", form="refund_form", requested="refund_confirmed", slots=korean(**slots))
    (question,), _ = run(ActionAskRefundConfirmed(), ask, KO_CC)
    assert question["amount"] == "59.99파운드"
    assert "59.99파운드" in rendered(KO_CC, question) and "5~7영업일" in rendered(KO_CC, question)


def test_korean_number_problem_names_the_kind_in_korean(backend: Repository) -> None:
    tracker = form_tracker("사 팔 이", "inform", form="order_status_form", requested="order_number",
                           slots=korean(), extracted={"order_number": "사 팔 이"})  # fmt: skip
    slots = run(ValidateOrderStatusForm(), tracker, KO_CC)[1]
    assert slots["form_problem"] == {"code": "wrong_length", "kind": "order", "heard": "482"}
    ask = form_tracker("사 팔 이", "inform", form="order_status_form", requested="order_number", slots=korean(**slots))
    (reply,), _ = run(ActionAskOrderNumber(), ask, KO_CC)
    assert reply["response"] == "utter_number_wrong_length"
    assert rendered(KO_CC, reply) == "4 8 2, 이렇게 들었는데, 주문 번호는 6자리입니다. 다시 말씀해 주세요."


def test_korean_complaint_logged_in_korean(backend: Repository) -> None:
    said = "물건이 파손돼서 왔어요"
    history = [{"event": "user", "text": said, "parse_data": {"intent": {"name": "complain"}}}]
    tracker = form_tracker("55120934", "inform", form=None, sender="call-ko-complaint", history=history,
                           slots=korean(account_number="55120934", complaint_category="product"))  # fmt: skip
    (reply,), _ = run(ActionSubmitComplaint(), tracker, KO_CC)
    assert reply["category"] == "상품" and reply["custom"]["ticket"]["kind"] == "complaint"
    assert rendered(KO_CC, reply).startswith("상품에 대한 불만을 접수했습니다.")


def test_korean_music_and_climate() -> None:
    music = build_tracker([("재즈 틀어 줘", "play_music", None)], slots=korean(tone="standard"),
                          entities=[{"entity": "genre", "value": "jazz"}])  # fmt: skip
    (reply,), _ = run(ActionPlayMusic(), music, KO_CAR)
    assert reply["playlist"] == "재즈" and reply["custom"]["media"]["playlist"] == "jazz"
    for said, setting, delta in [("좀 추워", "2도 따뜻하게", 2.0), ("너무 더워", "2도 시원하게", -2.0)]:
        (reply,), _ = run(ActionSetClimate(), build_tracker([(said, "set_climate", None)], slots=korean()), KO_CAR)
        assert reply["setting"] == setting and reply["custom"]["climate"]["delta_celsius"] == delta
    exact = build_tracker([("온도 21도로 맞춰 줘", "set_climate", None)], slots=korean(),
                          entities=[{"entity": "temperature", "value": "21"}])  # fmt: skip
    assert run(ActionSetClimate(), exact, KO_CAR)[0][0]["setting"] == "21도"


@pytest.mark.parametrize(("said", "place"), [("강남역으로 가 줘", "강남역"), ("회사까지 안내해 주세요", "회사"),
                                             ("종로", "종로"), ("종로로 가줘", "종로"), ("서울역이요", "서울역"),
                                             ("the central station", "the central station")])  # fmt: skip
def test_korean_destination_answers(said: str, place: str) -> None:
    tracker = build_tracker([(said, "navigate", None)], slots=korean())
    validated = ValidateDestinationForm().validate_destination(said, CollectingDispatcher(), tracker, KO_CAR)
    assert validated == {"destination": place}


# ----------------------------------------------------------------------------- same bot, other language
@pytest.mark.parametrize(("korean_bot", "english_bot"), [("ko_contact_center", "contact_center"), ("ko_in_car", "in_car")])
def test_korean_bots_have_the_english_intents_slots_forms_and_actions(korean_bot: str, english_bot: str) -> None:
    ko, en = load_domain(korean_bot), load_domain(english_bot)
    assert ko["intents"] == en["intents"] and ko.get("entities") == en.get("entities")
    assert ko["forms"] == en["forms"] and ko["actions"] == en["actions"]
    assert set(ko["responses"]) == set(en["responses"])
    assert set(ko["slots"]) - set(en["slots"]) == {"language"}
    assert {k: v for k, v in ko["slots"].items() if k != "language"} == en["slots"]
    for name, variations in ko["responses"].items():
        assert all(re.search(r"[가-힣]", v["text"]) for v in variations), f"{korean_bot}/{name} is not Korean"
