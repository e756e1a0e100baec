"""A Korean tokenizer for Rasa 3.6 on kiwipiepy (morphological analysis), and a guard for text it
cannot analyse.

Rasa's ``WhitespaceTokenizer`` keeps particles and endings on the noun ("주문번호는", "엄마한테"), so
"주문" in one example and "주문을" in another are different words and an entity can never be just
"엄마". :class:`KiwiTokenizer` splits each eojeol into morphemes ("엄마" + "한테"), keeps each token's
surface text and offsets in the original message (entity annotations stay aligned) and gives the
morpheme's dictionary form as the lemma ("줬어요" -> "주"), which ``CountVectorsFeaturizer`` uses, and
Kiwi's part-of-speech tag (Sejong tagset: NNG common noun, NNP proper noun, JKB adverbial particle, ...)
under ``pos``, where Rasa's ``LexicalSyntacticFeaturizer`` and ``CRFEntityExtractor`` read a token's tag
(their ``pos`` / ``pos2`` features): "a noun before 한테" is what finds a contact the data never named.

Text with nothing Korean to analyse (emoji only, Latin-only English) must not reach the intent
classifier as if it were Korean: :class:`UnanalysableTextFallback` (placed after the classifiers)
turns it into ``nlu_fallback``, so the bot asks again in Korean. Digits count as content: a keypad
or spoken number ("482107") is an answer, not noise.

    pipeline:
      - name: bot.components.kiwi_tokenizer.KiwiTokenizer
      ...
      - name: FallbackClassifier
      - name: bot.components.kiwi_tokenizer.UnanalysableTextFallback
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

__all__ = [
    "KiwiTokenizer",
    "UnanalysableTextFallback",
    "has_analysable_content",
    "morpheme_spans",
    "tagged_morpheme_spans",
]

logger = logging.getLogger(__name__)

# Hangul syllables and jamo, or a digit: what the Korean bots can understand.
_ANALYSABLE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f0-9]")
# The token data key Rasa's featurizers read a part-of-speech tag from (rasa.nlu.tokenizers.spacy_tokenizer
# names it POS_TAG_KEY; importing that module would import spaCy).
POS_TAG_KEY = "pos"


def has_analysable_content(text: str | None) -> bool:
    """Whether ``text`` has Hangul or a digit (emoji, punctuation and Latin-only text do not)."""
    return bool(_ANALYSABLE.search(text or ""))


@functools.lru_cache(maxsize=1)
def _kiwi() -> Any:
    # One analyser per process: loading the model takes about a second and ~100 MB.
    from kiwipiepy import Kiwi

    return Kiwi()


def tagged_morpheme_spans(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, dictionary form, part-of-speech tag) of each morpheme of ``text``, merged where spans
    overlap.

    Kiwi restores contracted syllables ("줘" = "주" + "어"), so two morphemes can share characters;
    a Rasa token must be a piece of the original text, so those become one token (the first
    morpheme's form and tag kept).
    """
    spans: list[tuple[int, int, str, str]] = []
    for morpheme in _kiwi().tokenize(text):
        start, end = morpheme.start, morpheme.start + morpheme.len
        if end <= start or not text[start:end].strip():
            continue
        if spans and start < spans[-1][1]:
            first_start, first_end, form, tag = spans[-1]
            spans[-1] = (first_start, max(first_end, end), form, tag)
        else:
            spans.append((start, end, morpheme.form, str(morpheme.tag)))
    return spans


def morpheme_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, dictionary form) of each morpheme of ``text`` (:func:`tagged_morpheme_spans` without
    the tags)."""
    return [(start, end, form) for start, end, form, _ in tagged_morpheme_spans(text)]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class KiwiTokenizer(Tokenizer):
    """Korean morphemes as Rasa tokens (surface text + offsets, dictionary form as lemma, tag as ``pos``)."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @staticmethod
    def supported_languages() -> list[str] | None:
        return ["ko"]

    @staticmethod
    def required_packages() -> list[str]:
        return ["kiwipiepy"]

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> KiwiTokenizer:
        _kiwi()  # fail at start-up, not on the first caller, if the analyser cannot load
        return cls(config)

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        text = message.get(attribute) or ""
        tokens = [Token(text[start:end], start, end, data={POS_TAG_KEY: tag}, lemma=form)
                  for start, end, form, tag in tagged_morpheme_spans(text)]  # fmt: skip
        if not tokens and text.strip():
            # Nothing Kiwi could split (e.g. a lone symbol): the whole text is one token, as Rasa's
            # own tokenizers do, so every message has at least one token for the featurizers.
            stripped = text.strip()
            start = text.index(stripped)
            tokens = [Token(stripped, start, start + len(stripped))]
        return self._apply_token_pattern(tokens)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class UnanalysableTextFallback(GraphComponent, IntentClassifier):
    """``nlu_fallback`` (confidence 1.0) for a message with no Hangul and no digit, whatever DIET said."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    def __init__(self, config: dict[str, Any]) -> None:
        self.component_config = config

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> UnanalysableTextFallback:
        return cls(config)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            if has_analysable_content(message.get(TEXT)):
                continue
            logger.debug("no Korean or digits in %r: nlu_fallback", message.get(TEXT))
            fallback = {INTENT_NAME_KEY: DEFAULT_NLU_FALLBACK_INTENT_NAME, PREDICTED_CONFIDENCE_KEY: 1.0}
            message.data[INTENT] = dict(fallback)
            ranking = [r for r in message.data.get(INTENT_RANKING_KEY, [])
                       if r.get(INTENT_NAME_KEY) != DEFAULT_NLU_FALLBACK_INTENT_NAME]  # fmt: skip
            message.data[INTENT_RANKING_KEY] = [dict(fallback), *ranking]
        return messages
