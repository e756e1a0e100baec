"""The decoders that run in each ASR worker process (pocketsphinx or Whisper via faster-whisper).

Kept apart from :mod:`connectors.speech.asr` so a worker imports only its engine (small and quick to
spawn). Processes, not threads: pocketsphinx holds the GIL while it decodes (measured: two
threads with a decoder each take as long as one), which would also stall the gateway's event loop;
CTranslate2 releases it, but one process per turn in flight keeps a stuck or crashed decoder from
taking the gateway with it, and a timed-out turn can be killed with its process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["start_decoder", "start_whisper", "ready", "decode", "drop_repeats", "encoder_input"]

# One turn's PCM16 -> (text, language code or None when the engine does not say).
_Decoded = tuple[str, str | None]
# A batch of turns -> one result each, in order.
_decode: Callable[[list[bytes]], list[_Decoded]] | None = None


def _one_at_a_time(decode_one: Callable[[bytes], _Decoded]) -> Callable[[list[bytes]], list[_Decoded]]:
    """Engines with no batched decoding take a batch's turns in turn."""
    return lambda turns: [decode_one(pcm16) for pcm16 in turns]


def start_decoder(max_active_hmms: int) -> None:
    """Process-pool initializer for pocketsphinx: load the model once per worker."""
    global _decode
    from pocketsphinx import Decoder

    decoder: Any = Decoder(loglevel="FATAL", maxhmmpf=max_active_hmms)

    def run(pcm16: bytes) -> tuple[str, str | None]:
        decoder.start_utt()
        decoder.process_raw(pcm16, no_search=False, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return (hypothesis.hypstr.strip() if hypothesis is not None else ""), "en"

    _decode = _one_at_a_time(run)


def start_whisper(
    model_dir: str, language: str | None, beam_size: int, compute_type: str, cpu_threads: int,
    no_speech_threshold: float, max_new_tokens: int, alternative_languages: tuple[str, ...],
    vad_filter: bool, context: str, context_margin_s: float,
) -> None:
    """Process-pool initializer for Whisper: load the CTranslate2 model folder once per worker.

    The folder was verified (sha256 of every file) by the parent before the pool was started; a
    local folder never touches a model hub (``local_files_only``). With ``alternative_languages``
    each turn's language is identified first, among ``language`` and those only (a Korean line
    never decodes a turn as Japanese), and the turn is decoded in the most probable of them.

    ``context="turn"``: the encoder sees the turn plus ``context_margin_s`` of silence instead of
    Whisper's 30 s (:func:`_turn_context_decoder`); ``"30s"``: faster-whisper's own transcribe."""
    global _decode
    from faster_whisper import WhisperModel

    model = WhisperModel(
        model_dir, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1,
        local_files_only=True,
    )

    allowed = (language, *alternative_languages) if language is not None else ()

    def pick_language(audio: np.ndarray) -> str | None:
        if len(allowed) < 2:
            return language
        _top, _probability, ranked = model.detect_language(audio)
        return most_probable(allowed, dict(ranked))

    if context == "turn":
        _decode = _turn_context_decoder(model, allowed or (language,), beam_size, max_new_tokens,
                                        no_speech_threshold, context_margin_s)
        return

    def run(pcm16: bytes) -> tuple[str, str | None]:
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        segments, info = model.transcribe(
            audio, language=pick_language(audio), beam_size=beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=vad_filter, no_speech_threshold=no_speech_threshold,
            temperature=0.0, max_new_tokens=max_new_tokens,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return text, info.language

    _decode = _one_at_a_time(run)


# Whisper's 30-s window is 3,000 mel frames (1,500 encoder positions); a turn uses the first ones.
_MEL_FRAMES_30S = 3000
_TOKENS_PER_SECOND = 8  # decoding bound per second of turn: Korean ~4, English ~3 tokens/s here
_LOG_PROB_FLOOR = -1.0  # with a high no-speech probability, a hypothesis this unlikely per token is silence


def _turn_context_decoder(
    model: Any, languages: tuple[str | None, ...], beam_size: int, max_new_tokens: int,
    no_speech_threshold: float, margin_s: float,
) -> Callable[[list[bytes]], list[_Decoded]]:
    """Decode turns with the encoder input cut to the turn plus ``margin_s`` of silence.

    Whisper pads every input to 30 s, so a 2-s turn costs as much encoder work as 30 s (~650 ms
    here on one thread, int8). CTranslate2's encoder takes a shorter input; the decoder then sees
    only the turn's positions: ~4-7x faster on short turns (benchmarks/results/bench_asr.json: as
    accurate in English and Korean, a few points less in German). Without the 30 s of trailing silence
    the decoder sometimes fails to stop and repeats the utterance, so decoding is bounded by the turn's
    length and repeated sentences are dropped (:func:`drop_repeats`).

    Several turns are decoded as one batch (one encoder call, one beam search): on this CPU 1.4-1.7x
    the turns per second of one at a time at the same accuracy (bench_asr.json, ``*_batch4``). A batch
    of one is exactly the single-turn decoding. Each turn keeps its own token budget."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    sample_rate = model.feature_extractor.sampling_rate
    tokenizers: dict[str | None, Any] = {}

    def tokenizer_for(language: str | None) -> Any:
        if language not in tokenizers:
            tokenizers[language] = Tokenizer(model.hf_tokenizer, True, task="transcribe", language=language)
        return tokenizers[language]

    def run(turns: list[bytes]) -> list[_Decoded]:
        audios = [np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0 for pcm16 in turns]
        mel = encoder_input(model.feature_extractor, audios, margin_s)
        encoded = model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=False)
        chosen = [languages[0]] * len(turns)
        if len(languages) > 1 or languages[0] is None:
            for i, ranked in enumerate(model.model.detect_language(encoded)):
                scores = {token[2:-2]: p for token, p in ranked}  # "<|ko|>"
                chosen[i] = most_probable(languages if languages[0] is not None else tuple(scores), scores)
        tokenizers_used = [tokenizer_for(language) for language in chosen]
        prompts = [[*tokenizer.sot_sequence, tokenizer.no_timestamps] for tokenizer in tokenizers_used]
        budgets = [min(max_new_tokens, int(audio.shape[0] / sample_rate * _TOKENS_PER_SECOND) + 8) for audio in audios]
        results = model.model.generate(
            encoded, prompts, beam_size=beam_size, max_length=len(prompts[0]) + max(budgets), suppress_blank=True,
            suppress_tokens=[-1], return_scores=True, return_no_speech_prob=True,
        )
        decoded: list[_Decoded] = []
        for tokenizer, language, budget, result in zip(tokenizers_used, chosen, budgets, results, strict=True):
            tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot][:budget]
            # CTranslate2's score is the log-probability per token (length_penalty 1). Silence and line
            # noise decode as a confident short word ("you", "Okay.") with a high no-speech probability.
            score = result.scores[0] if result.scores else 0.0
            if result.no_speech_prob > no_speech_threshold and score < _LOG_PROB_FLOOR:
                decoded.append(("", language))
            else:
                decoded.append((drop_repeats(tokenizer.decode(tokens).strip()), language))
        return decoded

    return run


def encoder_input(feature_extractor: Any, audios: list[np.ndarray], margin_s: float) -> np.ndarray:
    """Whisper log-mel of turns (float32, 16 kHz) as the turn-long encoder takes them, ``[B, 80, T]``:
    each turn followed by ``margin_s`` of silence, the shorter turns of a batch padded with more
    silence up to the longest, at most Whisper's 30 s, an even frame count (the encoder halves it)."""
    padded = int(margin_s * feature_extractor.sampling_rate) + max(audio.shape[0] for audio in audios)
    mel = np.stack([feature_extractor(np.pad(audio, (0, padded - audio.shape[0])))[:, :_MEL_FRAMES_30S]
                    for audio in audios])  # fmt: skip
    return np.ascontiguousarray(mel[:, :, : mel.shape[2] // 2 * 2])


_SENTENCE_END = re.compile(r"(?<=[.?!。？！])\s+")
_MAX_LOOP_SENTENCES = 3  # a decoding loop repeats at most this many sentences as one block
_MIN_LOOP_SPAN = 8  # words a loop's copies span at least: "I want to, I want to" (6) is a restart, not a loop


def drop_repeats(text: str) -> str:
    """``"Kids are talking. Kids are talking. Kids"`` -> ``"Kids are talking."``: a sentence, or a block of
    up to :data:`_MAX_LOOP_SENTENCES` sentences, equal to the one before it, or a fragment that begins the
    last sentence (or the text's end beginning the last block) again, is a decoding loop. Blocks matter
    because an abbreviation splits a sentence: ``"Dr. Sitting by the door. Dr. Sitting by the door. Dr"``.
    Loops without punctuation inside a sentence go first (:func:`_drop_word_loops`)."""
    sentences = [_drop_word_loops(part.strip()) for part in _SENTENCE_END.split(text) if _letters(part)]
    keys = [_letters(sentence) for sentence in sentences]
    kept: list[int] = []
    i = 0
    while i < len(sentences):
        repeated = _repeated_sentences(keys, kept, i)
        if not repeated:
            kept.append(i)
        i += max(1, repeated)
    return " ".join(sentences[k] for k in kept)


def _repeated_sentences(keys: list[str], kept: list[int], i: int) -> int:
    """How many sentences from ``i`` on repeat the last kept ones (0: none)."""
    rest = "".join(keys[i:])
    for size in range(1, min(_MAX_LOOP_SENTENCES, len(kept)) + 1):
        block = [keys[k] for k in kept[-size:]]
        if keys[i : i + size] == block:
            return size
        if "".join(block).startswith(rest):
            return len(keys) - i  # the text ends by beginning the block again
    return 1 if kept and keys[kept[-1]].startswith(keys[i]) else 0


def _drop_word_loops(sentence: str) -> str:
    """Inside one sentence, a run of words said again at once, the copies spanning :data:`_MIN_LOOP_SPAN`
    words or more, is a loop without punctuation (beam search: ``"kids are talking by the door kids are
    talking by the door"``, ``"hot hot hot hot hot hot hot hot"``); the copies go, and a trailing fragment
    that begins the run again goes with them. Shorter repeats ("thank you thank you", "no no no") are
    speech, and so are digits (an account number may repeat one)."""
    words = sentence.split()
    keys = [_letters(word) for word in words]
    kept: list[int] = []
    loop = ""
    i = 0
    while i < len(words):
        size, copies = _loop_at(keys, [keys[k] for k in kept], i)
        if size:
            loop = "".join(keys[k] for k in kept[-size:])
            i += size * copies
            continue
        if loop and loop.startswith("".join(keys[i:])):
            break  # the text ends by beginning the loop again
        kept.append(i)
        i += 1
    return " ".join(words[k] for k in kept)


def _loop_at(keys: list[str], said: list[str], i: int) -> tuple[int, int]:
    """(block size, copies) of the shortest block ending ``said`` that ``keys`` repeats from ``i`` on
    often enough to be a loop; (0, 0) if none."""
    for size in range(1, len(said) + 1):
        block = said[-size:]
        if "".join(block).isdigit():
            continue
        copies = 0
        while keys[i + copies * size : i + (copies + 1) * size] == block:
            copies += 1
        if copies and size * (copies + 1) >= _MIN_LOOP_SPAN:
            return size, copies
    return 0, 0


def most_probable(allowed: tuple[str | None, ...], probabilities: dict[str, float]) -> str | None:
    """The allowed language Whisper finds most probable; ties go to the line's own (the first)."""
    return max(allowed, key=lambda code: probabilities.get(code or "", 0.0))


def _letters(text: str) -> str:
    return re.sub(r"\W", "", text.lower())


def ready() -> bool:
    """A no-op task: submitting one per worker makes the pool start them all up front."""
    return _decode is not None


def decode(turns: list[bytes]) -> tuple[list[_Decoded], float]:
    """16 kHz mono PCM16 of one or more turns -> ((text, its language code) per turn, seconds spent
    decoding the batch)."""
    assert _decode is not None, "worker started without a decoder"
    started = time.perf_counter()
    decoded = _decode(turns)
    return decoded, time.perf_counter() - started
