"""The words the actions build themselves (dates, amounts, number kinds, categories, settings), per
bot language.

Replies are domain responses, so their sentences are already in the bot's language; what an action
fills into a template (``{expected_on}``, ``{amount}``, ``{kind}``, ``{setting}``, ...) comes from the
:class:`Phrases` of the bot's language. The Korean bots have a ``language`` slot (initial value
``ko``); a bot without one (the English bots) gets English, so their replies are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from rasa_sdk import Tracker

__all__ = ["DEFAULT_LANGUAGE", "PHRASES", "Phrases", "SummaryWords", "language_of", "phrases_for"]

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class SummaryWords:
    """The human agent's hand-off summary (``actions.handoff.summarise``), in the agent's language:
    a Korean contact center's agents read Korean."""

    topics: Mapping[str, str]  # task intent -> what the caller was calling about
    reasons: Mapping[str, str]  # hand-off reason -> sentence; other reasons: ``sounded``
    sounded: str  # fields: emotion, turns
    turns: str  # field: n (more than one turn)
    several_turns: str
    emotions: Mapping[str, str]  # emotion label -> word (the label itself if absent)
    topic: str  # field: topic
    identified: str  # field: numbers (joined by ``joiner``)
    joiner: str
    tickets: str  # field: tickets
    last_message: str  # field: text
    recent_emotion: str  # field: moods

    def emotion(self, label: str) -> str:
        return self.emotions.get(label, label)


@dataclass(frozen=True)
class Phrases:
    weekdays: tuple[str, ...]  # Monday first, as date.weekday()
    months: tuple[str, ...]  # January first
    day_pattern: str  # fields: weekday, day, month, month_number
    unknown_day: str
    money_pattern: str  # fields: pounds, pence (GBP: the backend's currency)
    courier: str  # when the backend names no carrier
    number_kinds: Mapping[str, str]  # "order" / "account" -> how the bot names the number
    number_where: Mapping[str, str]  # where the caller finds that number
    complaint_categories: Mapping[str, str]  # complaint category -> how the bot says it
    degrees: str  # field: value (degrees Celsius)
    warmer: str
    cooler: str
    playlists: Mapping[str, str]  # playlist label -> how the bot says it (the label itself if absent)
    summary: SummaryWords

    def day_words(self, day: date | None) -> str:
        """How a person says a date ("Saturday 13 December", "12월 13일 토요일")."""
        if day is None:
            return self.unknown_day
        return self.day_pattern.format(weekday=self.weekdays[day.weekday()], day=day.day,
                                       month=self.months[day.month - 1], month_number=day.month)  # fmt: skip

    def money(self, pence: int) -> str:
        return self.money_pattern.format(pounds=pence // 100, pence=f"{pence % 100:02d}")

    def playlist(self, label: str) -> str:
        return self.playlists.get(label, label)


ENGLISH = Phrases(
    weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    months=("January", "February", "March", "April", "May", "June", "July", "August", "September",
            "October", "November", "December"),  # fmt: skip
    day_pattern="{weekday} {day} {month}",
    unknown_day="an unknown day",
    money_pattern="£{pounds}.{pence}",
    courier="the courier",
    number_kinds={"order": "order number", "account": "account number"},
    number_where={"order": "in your order confirmation email", "account": "at the top of every bill"},
    complaint_categories={"delivery": "a delivery", "product": "a product", "billing": "billing",
                          "service": "our service", "other": "something else"},  # fmt: skip
    degrees="{value:g} degrees",
    warmer="two degrees warmer",
    cooler="two degrees cooler",
    playlists={},
    summary=SummaryWords(
        topics={"ask_billing": "billing question", "request_refund": "refund", "check_delivery": "order status",
                "complain": "complaint", "cancel_subscription": "cancellation",
                "out_of_scope": "something we do not handle"},  # fmt: skip
        reasons={"requested": "Caller asked for a human.",
                 "unidentified": "Caller could not be identified and accepted a colleague.",
                 "backend_unavailable": "Our order system was down; caller accepted a colleague."},  # fmt: skip
        sounded="Caller sounded {emotion} for {turns} in a row.",
        turns="{n} turns",
        several_turns="several turns",
        emotions={},
        topic="Topic: {topic}.",
        identified="Identified by {numbers}.",
        joiner=" and ",
        tickets="Tickets: {tickets}.",
        last_message='Last message: "{text}".',
        recent_emotion="Recent emotion: {moods}.",
    ),
)

KOREAN = Phrases(
    weekdays=("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"),
    months=tuple(f"{n}월" for n in range(1, 13)),
    day_pattern="{month} {day}일 {weekday}",
    unknown_day="알 수 없는 날짜",
    money_pattern="{pounds}.{pence}파운드",
    courier="택배사",
    number_kinds={"order": "주문 번호", "account": "계정 번호"},
    number_where={"order": "주문 확인 이메일에", "account": "모든 청구서 맨 위에"},
    complaint_categories={"delivery": "배송", "product": "상품", "billing": "요금", "service": "서비스",
                          "other": "기타 문제"},  # fmt: skip
    degrees="{value:g}도",
    warmer="2도 따뜻하게",
    cooler="2도 시원하게",
    playlists={"calm": "잔잔한 음악", "comfort": "위로가 되는 음악", "upbeat": "신나는 음악", "focus": "집중용 음악",
               "energising": "기운 나는 음악", "jazz": "재즈", "rock": "록", "pop": "팝", "classical": "클래식",
               "country": "컨트리", "folk": "포크", "dance": "댄스", "electronic": "일렉트로닉", "indie": "인디",
               "acoustic": "어쿠스틱", "ambient": "앰비언트", "funk": "펑크", "instrumental": "연주곡"},  # fmt: skip
    summary=SummaryWords(
        topics={"ask_billing": "요금 문의", "request_refund": "환불", "check_delivery": "주문 배송 조회",
                "complain": "불만 접수", "cancel_subscription": "구독 해지",
                "out_of_scope": "저희가 처리하지 않는 문의"},  # fmt: skip
        reasons={"requested": "고객이 상담원 연결을 요청했습니다.",
                 "unidentified": "본인 확인이 되지 않아 고객이 상담원 연결에 동의했습니다.",
                 "backend_unavailable": "주문 시스템 장애로 고객이 상담원 연결에 동의했습니다."},  # fmt: skip
        sounded="고객이 {turns} 연속 {emotion} 상태였습니다.",
        turns="{n}턴",
        several_turns="여러 턴",
        emotions={"angry": "화난", "sad": "슬픈", "happy": "기쁜", "neutral": "평온한", "upset": "언짢은"},
        topic="문의: {topic}.",
        identified="확인된 정보: {numbers}.",
        joiner=", ",
        tickets="접수 번호: {tickets}.",
        last_message='마지막 발화: "{text}".',
        recent_emotion="최근 감정: {moods}.",
    ),
)

PHRASES: Mapping[str, Phrases] = {"en": ENGLISH, "ko": KOREAN}


def language_of(tracker: Tracker) -> str:
    """The bot's language: its ``language`` slot if it has one we have phrases for, else English."""
    language = tracker.get_slot("language")
    return language if isinstance(language, str) and language in PHRASES else DEFAULT_LANGUAGE


def phrases_for(tracker: Tracker) -> Phrases:
    return PHRASES[language_of(tracker)]
