"""The operator's config (``config.yml``) as pydantic models.

Precedence, highest first: environment variables (``EMOTUNE_<SECTION>__<FIELD>``, e.g.
``EMOTUNE_GATEWAY__PORT=9000``), then the YAML file, then the defaults below. Secrets (tokens,
API keys, client secrets) have no value in the file: they come from the environment.

A bad config raises :class:`emotune.errors.ConfigError` with one line per wrong field naming the
file, the field path and what was expected.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from emotune.errors import ConfigError

__all__ = [
    "CORE_EMOTIONS",
    "PROFILES",
    "Profile",
    "ModelConfig",
    "StreamingConfig",
    "SmoothingConfig",
    "ToneRule",
    "Prosody",
    "TonePolicy",
    "EscalationConfig",
    "TwilioConfig",
    "GenesysConfig",
    "HandoffSummaries",
    "GatewayConfig",
    "RasaConfig",
    "AsrConfig",
    "TurnTakingConfig",
    "TtsConfig",
    "DataSource",
    "TrainingConfig",
    "EmotuneConfig",
    "load_config",
    "allow_engine",
    "check_speed_perturb",
    "DEFAULT_TRANSFER_ANNOUNCEMENT",
    "SAY_LANGUAGE_PATTERN",
    "PROJECT_ROOT",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CORE_EMOTIONS = ("neutral", "happy", "sad", "angry")
# Deployment profiles an operator can select; each may have an entry under `profiles:` in the file.
Profile = Literal["contact_center", "in_car", "ko_contact_center", "ko_in_car"]
PROFILES: tuple[str, ...] = get_args(Profile)

Tone = str
Intensity = Literal["low", "medium", "high"]


class _Section(BaseModel):
    # Typos in the operator's file must be reported, not silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _null_from_the_environment(cls, data: Any) -> Any:
        """``EMOTUNE_..._S=null`` switches an optional setting off: environment values are strings,
        and YAML's null never reaches them."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: None if isinstance(value, str) and value.strip() in ("null", "~") and key in fields
            and type(None) in get_args(fields[key].annotation) else value
            for key, value in data.items()
        }  # fmt: skip


class ModelConfig(_Section):
    """Which emotion model the runtime loads."""

    path: Path = Field(
        Path("models/emotune-ser-v1/emotion.onnx"),
        description="A v2 model folder (encoder + head, emotion.json inside) or a v1 ONNX file; "
        "relative paths are relative to the project root.",
    )
    sidecar: Path | None = Field(
        None, description="JSON sidecar; default: the model path with a .json suffix."
    )
    variant: Literal["fp32", "int8"] = Field(
        "fp32", description="fp32 model or its statically quantized int8 twin (<stem>.int8.onnx)."
    )
    labels: list[str] = Field(
        list(CORE_EMOTIONS),
        min_length=2,
        description="Labels shown to Rasa and subscribers; each must be a class of the model.",
    )
    intra_op_threads: int = Field(
        1, ge=1, le=64, description="onnxruntime intra-op threads per session (1 = one core)."
    )

    @model_validator(mode="after")
    def _int8_is_a_v1_twin(self) -> ModelConfig:
        if self.variant == "int8" and self.path.suffix != ".onnx":
            raise ValueError("variant int8 names the quantized twin of a v1 .onnx file; v2 model folders have none")
        return self


class StreamingConfig(_Section):
    """How the runtime slices a live stream into analysis windows."""

    window_s: float = Field(2.0, ge=0.5, le=4.0, description="Analysis window length (s).")
    hop_s: float = Field(1.0, ge=0.1, le=4.0, description="Time between labels (s).")
    vad_threshold_db: float = Field(
        -50.0, le=0.0, description="Frame energy (dBFS) above which a frame counts as voiced."
    )
    min_voiced_ratio: float = Field(
        0.3, ge=0.0, le=1.0, description="A window is analysed only if this share of it is voiced."
    )

    @model_validator(mode="after")
    def _hop_within_window(self) -> StreamingConfig:
        if self.hop_s > self.window_s:
            raise ValueError("hop_s must not exceed window_s (windows would leave gaps)")
        return self


class SmoothingConfig(_Section):
    """Smoothing so a steady speaker does not flicker between labels."""

    ema_alpha: float = Field(
        0.5, gt=0.0, le=1.0, description="Weight of the newest window in the moving average."
    )
    hysteresis: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A new label must beat the current one by this probability margin.",
    )
    min_confidence: float = Field(
        0.4, ge=0.0, le=1.0, description="Below this smoothed probability the label is 'neutral'."
    )


class ToneRule(_Section):
    """Map an emotion (at or above an intensity) to a tone."""

    emotion: str
    min_intensity: Intensity = "low"
    tone: Tone


class Prosody(_Section):
    """TTS prosody for a tone (SSML <prosody> semantics)."""

    rate: float = Field(1.0, gt=0.3, le=3.0, description="Speaking-rate factor (1.0 = normal).")
    pitch_semitones: float = Field(0.0, ge=-12, le=12, description="Pitch shift in semitones.")
    volume_db: float = Field(0.0, ge=-20, le=10, description="Volume change in dB.")


class TonePolicy(_Section):
    """Which tone the bot uses for which caller emotion; first matching rule wins."""

    default_tone: Tone = "standard"
    rules: list[ToneRule] = Field(
        default_factory=lambda: [
            ToneRule(emotion="angry", tone="calm"),
            ToneRule(emotion="sad", tone="warm"),
            ToneRule(emotion="happy", min_intensity="medium", tone="upbeat"),
        ]
    )
    intensity_bands: tuple[float, float] = Field(
        (0.45, 0.7),
        description="Confidence thresholds between low/medium and medium/high intensity.",
    )
    prosody: dict[Tone, Prosody] = Field(
        default_factory=lambda: {
            "standard": Prosody(),
            "calm": Prosody(rate=0.85, pitch_semitones=-2, volume_db=-3),
            "warm": Prosody(rate=0.9, pitch_semitones=1, volume_db=0),
            "upbeat": Prosody(rate=1.1, pitch_semitones=2, volume_db=1),
        }
    )

    @model_validator(mode="after")
    def _tones_have_prosody(self) -> TonePolicy:
        tones = {self.default_tone, *(r.tone for r in self.rules)}
        missing = sorted(t for t in tones if t not in self.prosody)
        if missing:
            raise ValueError(f"tones without a prosody entry: {', '.join(missing)}")
        low, high = self.intensity_bands
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("intensity_bands must be two increasing numbers in [0, 1]")
        return self

    def intensity(self, confidence: float) -> Intensity:
        low, high = self.intensity_bands
        if confidence >= high:
            return "high"
        if confidence >= low:
            return "medium"
        return "low"

    def tone_for(self, emotion: str, confidence: float) -> Tone:
        order = ("low", "medium", "high")
        level = order.index(self.intensity(confidence))
        for rule in self.rules:
            if rule.emotion == emotion and level >= order.index(rule.min_intensity):
                return rule.tone
        return self.default_tone


class EscalationConfig(_Section):
    """When the caller is handed to a human (contact center) or de-escalated (in-car).

    The rule itself is ``emotune.escalation.StreakRule`` (shared with the Rasa actions)."""

    negative_emotions: list[str] = Field(default_factory=lambda: ["angry"])
    streak_turns: int = Field(
        3, ge=1, le=20, description="Consecutive negative turns that trigger escalation."
    )
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0,
        description="The streak_turns turns of a run must average this probability of the negative emotions.",
    )
    floor_confidence: float | None = Field(
        0.35, ge=0.0, le=1.0,
        description="A turn keeps a run going at this negative probability, so one weaker turn among angry "
        "ones does not reset it (accumulated evidence); null = strict streak, every turn >= min_confidence.",
    )
    on_request: bool = Field(True, description="Hand off when the caller asks for a human.")

    @model_validator(mode="after")
    def _floor_below_min(self) -> EscalationConfig:
        if self.floor_confidence is not None and self.floor_confidence > self.min_confidence:
            raise ValueError("floor_confidence must not exceed min_confidence")
        return self


# A <Say> locale: Twilio's language attribute ("ko-KR", "en-US"; a few voices take a bare "arb").
SAY_LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Z]{2})?$"
DEFAULT_TRANSFER_ANNOUNCEMENT = "Connecting you to a colleague now."


class TwilioConfig(_Section):
    transfer_to: str | None = Field(
        None, description="Number or SIP URI a Twilio call is transferred to on escalation."
    )
    transfer_announcement: str | None = Field(
        DEFAULT_TRANSFER_ANNOUNCEMENT, max_length=500,
        description="What Twilio's own voice says in the transfer TwiML before it dials (after the bot's "
        "hand-off message); null: nothing.",
    )
    transfer_announcement_language: str | None = Field(
        None, pattern=SAY_LANGUAGE_PATTERN,
        description="The <Say> language of transfer_announcement (ko-KR on a Korean line, or Twilio "
        "reads Korean with its English voice); null: Twilio's default, en-US.",
    )
    auth_token: SecretStr | None = Field(
        None, description="Twilio auth token for X-Twilio-Signature; set EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN."
    )
    agent_context: bool = Field(
        False, description="Your agent desktop fetches the hand-off context (GET /v1/handoff/{CallSid} with "
        "the feed token, or reads the x-emotune-* SIP headers / Client parameters of the transfer): only then "
        "does the bot tell a Twilio caller that their colleague sees a summary (docs/handoff.md).",
    )
    require_stream_token: bool = Field(
        True, description="A stream's start must carry the per-call token the gateway's TwiML (GET "
        "/twilio/voice, your number's voice webhook) put in a <Parameter>: a replayed signed upgrade cannot "
        "claim another call's SID. False: any signed upgrade may name any callSid (your own TwiML).",
    )


class GenesysConfig(_Section):
    api_key: SecretStr | None = Field(
        None, description="AudioHook X-API-KEY; set EMOTUNE_GATEWAY__GENESYS__API_KEY."
    )
    client_secret: SecretStr | None = Field(
        None, description="Base64 client secret for HTTP message signatures (env only)."
    )
    max_clock_skew_s: int = Field(300, ge=1, description="Accepted signature age (s).")


# Each summary template's placeholders, with a value of the type the gateway fills in (a template is
# tried with these at load, so one the gateway could not fill is refused there, not mid-call).
_SUMMARY_PLACEHOLDERS: dict[str, dict[str, str | int]] = {
    "call_ended": {"reason": "max call length"},
    "fallbacks": {"turns": 2, "fallback_reason": "Rasa timed out"},
    "escalation": {"party": "caller", "emotions": "angry", "windows": 3},
}


class HandoffSummaries(_Section):
    """The summaries the gateway writes itself when it hands a call over (the bot's own hand-offs
    carry the bot's summary), in the language of whoever reads them: the agent, or an in-car unit."""

    call_ended: str = Field(
        "Call ended by the bot: {reason}.",
        description="The bot ended the call by handing it over (turn_taking max_call_action or silence_action "
        "handoff). Placeholder: {reason}, the reason's word from reasons.",
    )
    fallbacks: str = Field(
        "The bot could not answer {turns} turns in a row ({fallback_reason}).",
        description="rasa.handoff_after_fallbacks reached. Placeholders: {turns}, {fallback_reason} (the "
        "technical error, as logged).",
    )
    escalation: str = Field(
        "The {party} sounded {emotions} in {windows} consecutive analysis windows.",
        description="Monitor-only calls (AudioHook): the escalation rule fired. Placeholders: {party} and "
        "{emotions} (words from parties and emotions), {windows} (the streak's length).",
    )
    reasons: dict[str, str] = Field(
        default_factory=lambda: {"max_call_length": "max call length", "caller_silent": "caller silent"},
        description="Reason -> the words {reason} inserts; a reason not listed is inserted as is.",
    )
    parties: dict[str, str] = Field(
        default_factory=dict, description="caller / agent -> the words {party} inserts; unlisted: as is."
    )
    emotions: dict[str, str] = Field(
        default_factory=dict, description="Emotion label -> the word {emotions} inserts; unlisted: the label."
    )

    @field_validator("call_ended", "fallbacks", "escalation")
    @classmethod
    def _fillable(cls, template: str, info: ValidationInfo) -> str:
        allowed = _SUMMARY_PLACEHOLDERS[str(info.field_name)]
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"bad braces ({exc}); a literal brace is written {{{{ or }}}}") from None
        unknown = sorted(names - set(allowed))
        if unknown:
            shown = ", ".join("{" + name + "}" for name in unknown)
            raise ValueError(f"unknown placeholder {shown} (use {', '.join('{' + n + '}' for n in allowed)})")
        try:
            template.format(**allowed)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"cannot be filled in: {exc}") from None
        return template

    def call_ended_summary(self, reason: str) -> str:
        return self.call_ended.format(reason=self.reasons.get(reason, reason))

    def fallbacks_summary(self, turns: int, fallback_reason: str | None) -> str:
        # str(): a reply without a reason still fills a template checked with a string.
        return self.fallbacks.format(turns=turns, fallback_reason=str(fallback_reason))

    def escalation_summary(self, party: str, emotions: Iterable[str], windows: int) -> str:
        words = ", ".join(self.emotions.get(label, label) for label in sorted(set(emotions)))
        return self.escalation.format(party=self.parties.get(party, party), emotions=words, windows=windows)


class GatewayConfig(_Section):
    """The websocket gateway that telephony platforms and apps connect to."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    auth_token: SecretStr | None = Field(
        None, description="Callers' bearer token for /v1/stream (Authorization header; env only). Unset: "
        "/v1/stream refuses everyone.",
    )
    feed_token: SecretStr | None = Field(
        None, description="Supervisors' token for /feed (a separate role: the callers' token cannot read it; "
        "env only). Unset: the feed refuses everyone.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token for /metrics (env only). Unset: /metrics refuses everyone.",
    )
    insecure_dev: bool = Field(
        False, description="Development only: an endpoint without its credential accepts anyone (a loud "
        "warning at start-up; refused unless host is loopback). Same as `emotune serve --insecure-dev`.",
    )
    public_url: str | None = Field(
        None, pattern=r"^wss?://[^/?#]+$",
        description="The gateway's URL as Twilio sees it (e.g. wss://voice.example.com behind a TLS load "
        "balancer): X-Twilio-Signature is checked over it plus the request path. Required with a Twilio token.",
    )
    nonce_store: str | None = Field(
        None, pattern=r"^redis://",
        description="redis://host:port/db shared by gateway replicas: an AudioHook signature nonce used on "
        "one replica is refused on every other. Unset: an in-process cache (one replica).",
    )
    runtime_dir: Path | None = Field(
        None, description="Private directory (created 0700) for the PID file. Unset: $XDG_RUNTIME_DIR/emotune, "
        "else ~/.cache/emotune/run.",
    )
    max_calls: int = Field(
        200, ge=1, description="Concurrent calls, handshakes in progress included; more are refused with 503."
    )
    handshake_timeout_s: float = Field(10.0, gt=0)
    idle_timeout_s: float = Field(30.0, gt=0)
    max_frame_bytes: int = Field(64_000, ge=320)
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain; with tls_key the gateway serves wss:// and https:// "
        "(TLS 1.2+). Relative paths are resolved against the project root.",
    )
    tls_key: Path | None = Field(None, description="Unencrypted PEM private key of tls_cert.")
    record_audio: bool = Field(False, description="Store call audio (off: nothing is stored).")
    log_transcripts: bool = Field(
        False, description="Keep caller and bot text, DTMF digits and Twilio custom parameters in the call files "
        "and the feed (also on at log_level DEBUG). Off: they are written as \"[redacted]\".",
    )
    max_messages_per_s: float = Field(
        250.0, gt=0,
        description="Inbound websocket messages per second per call (token bucket); a flooding "
        "client is closed with 1008. Twilio sends 50/s, AudioHook 5-10/s.",
    )
    rate_burst_s: float = Field(
        30.0, gt=0,
        description="Seconds of max_messages_per_s a call may send at once: a caller's backlog after "
        "a network stall arrives in one burst and is not a flood.",
    )
    turn_deadline_s: float = Field(
        6.0, gt=0,
        description="A caller turn still waiting for speech recognition this long after the caller "
        "stopped speaking is answered with busy_reply instead (overload shedding: the caller hears "
        "an explicit retry prompt, never silence).",
    )
    busy_reply: str = Field(
        "Sorry, I missed that. Could you say it again?",
        description="What the bot says to a turn shed under overload (Rasa is not called).",
    )
    handoff_summaries: HandoffSummaries = Field(
        default_factory=HandoffSummaries,
        description="The summaries of the gateway's own hand-offs, in the agents' language.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Process log format; json is one object per line with the call id."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG adds transcripts (caller and bot text), DTMF digits and Twilio custom "
        "parameters to the process log, the call files and the feed; INFO and above never record them.",
    )
    inference_threads: int = Field(
        0, ge=0, le=64,
        description="Emotion inference threads off the event loop (each runs one batch at a time); 0: one per "
        "core this process may run on.",
    )
    emotion_tick_ms: int = Field(
        20, ge=5, le=500, description="How often every call's due emotion windows are scored together."
    )
    emotion_max_delay_s: float = Field(
        0.5, gt=0, le=10,
        description="A due window not scored within this is dropped and counted (overload: a late label is "
        "worse than none).",
    )
    max_queued_turns: int = Field(
        4, ge=1, le=100,
        description="Caller turns one call may have waiting for the bot; more are dropped and counted.",
    )
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    genesys: GenesysConfig = Field(default_factory=GenesysConfig)

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        return self


class RasaConfig(_Section):
    url: str = Field("http://127.0.0.1:5005", pattern=r"^https?://", description="Rasa server (REST channel).")
    bot: str = Field(
        "contact_center", pattern=r"^[a-z][a-z0-9_]*$",
        description="The Rasa project under bot/ this deployment talks to: `emotune demo` and `emotune pilot` "
        "train and start it (a gateway on its own only uses url).",
    )
    replicas: list[str] = Field(
        default_factory=list,
        description="More Rasa instances sharing one tracker store + lock store; a turn that cannot "
        "reach one (refused, 502/503) goes to the next. Timeouts are not retried (the turn may have run).",
    )
    timeout_s: float = Field(5.0, gt=0, description="Per-turn Rasa timeout; then the fallback reply is used.")
    fallback_reply: str = Field(
        "Sorry, I am having trouble right now. Let me get you to a colleague.",
        description="Said when Rasa fails a turn (down, timed out, HTTP error, an empty answer).",
    )
    handoff_after_fallbacks: int = Field(
        2, ge=0,
        description="Consecutive fallback turns in one call after which the call is handed to a human "
        "(reason dialogue_unavailable); 0: never.",
    )


# Engines the toolkit ships, per section; connectors.speech.asr / connectors.speech.tts ``register_engine`` add
# a deployment's own (e.g. a cloud client) here so that validation accepts their names too.
_ENGINES: dict[str, set[str]] = {"asr": {"whisper", "pocketsphinx", "none"}, "tts": {"kokoro", "espeak-ng", "none"}}
ENGINE_ENTRY_POINTS = {"asr": "emotune.asr_engines", "tts": "emotune.tts_engines"}


def plugin_engines(section: str) -> set[str]:
    """Engine names installed packages declare in the section's entry-point group (not imported)."""
    return {entry.name for entry in entry_points(group=ENGINE_ENTRY_POINTS[section])}


def allow_engine(section: str, name: str) -> None:
    """Let ``<section>.engine`` name an engine registered at run time (see ``connectors.speech.engines``)."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"engine name {name!r}: use letters, digits, '-', '_' or '.'")
    _ENGINES[section].add(name)


def _known_engine(section: str, name: str) -> str:
    if name not in _ENGINES[section]:
        known = _ENGINES[section] | plugin_engines(section)
        if name not in known:
            raise ValueError(
                f"unknown engine {name!r} (known: {', '.join(sorted(known))}; add one with an "
                f"{ENGINE_ENTRY_POINTS[section]!r} entry point or register_engine)"
            )
    return name


class AsrConfig(_Section):
    engine: str = Field(
        "whisper",
        description="whisper (Whisper via faster-whisper, offline, multilingual), pocketsphinx (offline "
        "English, fast, far less accurate on phone audio), 'none' when the platform sends text, or an "
        "engine an installed package declares (entry point group emotune.asr_engines).",
    )
    language: str = Field(
        "en-US", description="BCP 47 tag of the callers' language (whisper: its code, e.g. en, ko; "
        "'auto' detects per turn)."
    )
    alternative_languages: list[str] = Field(
        default_factory=list,
        description="whisper: other languages callers may speak (e.g. [en] on a Korean line). Each turn's "
        "language is then detected among language + these and the turn is transcribed in the most probable "
        "one; a turn not in language is answered with other_language_reply. Empty: always language.",
    )
    other_language_reply: str | None = Field(
        None,
        description="What the bot says to a turn recognised in one of alternative_languages (the dialogue "
        "is not called: its bot speaks language only). Null: the turn goes to the dialogue as recognised.",
    )
    vad_filter: bool = Field(
        False,
        description="whisper: drop the non-speech parts of a turn (faster-whisper's silero VAD) before "
        "decoding; the gateway's end-pointer has already cut the turn, so this only removes pauses inside it.",
    )
    context: Literal["turn", "30s"] = Field(
        "turn",
        description="whisper: what the encoder sees. turn: the turn plus context_margin_s of silence (about "
        "4x faster on short turns; accuracy in benchmarks/results/bench_asr.json); 30s: Whisper's own 30-s "
        "padding (faster-whisper's transcribe; vad_filter applies here only).",
    )
    context_margin_s: float = Field(
        3.0, ge=0.5, le=10.0,
        description="whisper, context turn: silence appended after the turn's audio (3 s: fewer errors in "
        "noise than 2 s, the same time; chosen on development speakers, benchmarks/results/bench_asr_dev.json).",
    )
    workers: int | None = Field(
        None, ge=1, le=64,
        description="Turns recognised at once across all calls (one worker process and decoder each). "
        "Unset: one per CPU core.",
    )
    model: str = Field(
        "whisper-base",
        description="whisper: a registered model folder under models/encoders (checked by sha256) or "
        "the path of a CTranslate2 Whisper folder of your own.",
    )
    beam_size: int = Field(5, ge=1, le=10, description="whisper: beam width (5: fewer errors than 1 = greedy, at up to 2x the decoding time, which early transcription hides).")
    max_batch: int = Field(
        4, ge=1, le=16,
        description="whisper, context turn: most waiting turns one worker decodes together. When callers' "
        "turns end at once they are decoded as a batch (more turns per second than one by one); idle "
        "workers share a burst evenly. 1: one turn at a time.",
    )
    batch_wait_s: float = Field(
        0.0, ge=0.0, le=0.5,
        description="whisper, context turn: while another worker is busy (a burst under way), how long a free "
        "worker that finds fewer than max_batch turns waiting waits for more (from the oldest one's arrival) "
        "before it decodes. Callers' turns that end together reach the recogniser up to a second apart, and "
        "without the wait most are decoded alone: fewer turns per second (at 10 synchronised callers, two runs, "
        "0.15 s cut recognition CPU by 17-25% and the time to the first reply p95 from 1.94-2.00 to 1.73-1.79 s, "
        "but raised its p50 from 0.93-0.95 to 1.12-1.13 s: the wait outlasts what early transcription hides; "
        "benchmarks/results/bench_reply_latency_batch_wait_*ms_sync.json). With every worker free a turn never "
        "waits. 0: never wait.",
    )
    compute_type: Literal["int8", "int8_float32", "float32"] = Field(
        "int8", description="whisper: CTranslate2 weight type (int8: ~2x faster than float32 on this CPU)."
    )
    cpu_threads: int = Field(1, ge=1, le=16, description="whisper: threads per worker process.")
    max_new_tokens: int = Field(
        96, ge=8, le=440,
        description="whisper: most tokens decoded per turn (a 20-s turn holds ~60 words); bounds the time "
        "a noisy turn can take when the decoder runs on.",
    )
    no_speech_threshold: float = Field(
        0.6, ge=0.0, le=1.0,
        description="whisper: a turn whose no-speech probability is above this (and decodes with low "
        "confidence) gives no words, so noise does not become a turn.",
    )
    timeout_s: float = Field(
        30.0, gt=0,
        description="A turn's recognition taking longer fails (its worker is restarted); the caller "
        "is asked to repeat.",
    )

    max_active_hmms: int = Field(
        3000, ge=100,
        description="pocketsphinx search cap per frame (maxhmmpf): speed vs accuracy. Measured on 50 "
        "phone-line turns: 3000 decodes in 56% of the unbounded time at -1.7 points word recall.",
    )

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, name: str) -> str:
        return _known_engine("asr", name)

    @model_validator(mode="after")
    def _languages_consistent(self) -> AsrConfig:
        if self.alternative_languages and self.language.strip().lower() == "auto":
            raise ValueError("alternative_languages needs a fixed language (not 'auto')")
        if self.alternative_languages and self.engine == "pocketsphinx":
            raise ValueError("alternative_languages needs an engine that identifies languages (whisper); "
                             "pocketsphinx knows en-US only")
        return self

    def concurrency(self) -> int:
        return self.workers or os.cpu_count() or 1

    def batch_turns(self) -> int:
        """Turns one worker decodes together: max_batch where the engine decodes batches natively
        (Whisper with the turn-long input), else 1 (a batch would only make its turns wait for each other)."""
        return self.max_batch if self.engine == "whisper" and self.context == "turn" else 1

    def turns_in_flight(self) -> int:
        """Turns the recogniser takes at once: each worker's batch."""
        return self.concurrency() * self.batch_turns()


_KEYPAD_KEYS = "0123456789*#ABCD"


class KeypadConfig(_Section):
    """Numbers typed on the keypad: one caller turn per number, not one per key (IVR-style entry)."""

    collect_numbers: bool = Field(
        True,
        description="While the bot asks for a number (its reply's custom.task.step is one of steps), keys "
        "are collected into one turn carrying the digits (ended by terminator, a pause of "
        "inter_digit_timeout_s, or more than max_digits); otherwise each key is the turn_taking.dtmf menu. "
        "false: every key is the menu, as before.",
    )
    steps: list[str] = Field(
        default_factory=lambda: ["ask_order_number", "ask_account_number"],
        description="custom.task.step values of a bot reply that open a number entry (the contact-center "
        "forms' questions for an order or account number).",
    )
    terminator: str = Field("#", description="Ends the number (the hash key); alone, the empty_prompt is said.")
    clear_key: str = Field("*", description="Throws away the digits typed so far; the caller starts again.")
    inter_digit_timeout_s: float = Field(
        3.0, gt=0.0, le=30.0,
        description="A pause this long after the last key ends the number (no terminator needed).",
    )
    max_digits: int = Field(
        8, ge=1, le=32,
        description="Longest number (account numbers: 8). One key more sends the entry at once, too long "
        "(the bot says so and asks again); keys after it are ignored until the caller pauses.",
    )
    barge_in: bool = Field(True, description="A key pressed while the bot speaks stops the bot (as speech does).")
    empty_prompt: str = Field(
        "Please type the number on your keypad, then press the hash key.",
        description="Said when the terminator comes with nothing typed.",
    )
    retype_prompt: str = Field(
        "Sorry, I missed some of those keys. Please type the whole number again, then press the hash key.",
        description="Said when a key of a number was dropped (over turn_taking.dtmf_max_per_s): the number is "
        "thrown away, never sent with a digit missing.",
    )

    @field_validator("terminator", "clear_key")
    @classmethod
    def _control_key(cls, key: str) -> str:
        if len(key) != 1 or key not in _KEYPAD_KEYS or key.isdigit():
            raise ValueError(f"must be one keypad key that is not a digit (* # A B C D), got {key!r}")
        return key

    @model_validator(mode="after")
    def _distinct_keys(self) -> KeypadConfig:
        if self.terminator == self.clear_key:
            raise ValueError(f"terminator and clear_key must differ, both are {self.terminator!r}")
        return self


class TurnTakingConfig(_Section):
    """End-pointing (when a caller's turn ends), barge-in and the call flow around the turns."""

    vad: Literal["silero", "energy"] = Field(
        "silero",
        description="silero: the neural VAD (ONNX, models/encoders/silero-vad, checked by sha256) decides "
        "speech per 32 ms; energy: a dB threshold (streaming.vad_threshold_db), no model.",
    )
    speech_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="silero: speech probability at which a frame starts speech."
    )
    silence_threshold: float = Field(
        0.35, ge=0.0, lt=1.0,
        description="silero: probability below which a frame counts as silence (hysteresis with "
        "speech_threshold, so soft word endings do not end a turn).",
    )
    background_speech_db: float | None = Field(
        6.0, gt=0.0, le=40.0,
        description="silero: on a noisy line (the caller's level less than noisy_line_db above the line's "
        "background), a frame more than this many dB under the caller's level is background speech (babble, "
        "a TV, a colleague), not the caller: it counts as a pause and gets no emotion label. The VAD hears "
        "both as speech, so without this a babbling line holds the turn open. null: the VAD alone decides.",
    )
    noisy_line_db: float = Field(
        35.0, gt=0.0, le=80.0,
        description="silero: a line whose caller is at least this much above its background is quiet: "
        "background_speech_db does not act there, so soft speech on a clean line is never cut.",
    )
    caller_level_smooth_s: float = Field(
        0.4, gt=0.0, le=2.0,
        description="silero: frame energy is averaged over this long before the caller and background "
        "levels are compared (one loud babble syllable does not break a pause).",
    )
    caller_resume_db: float = Field(
        3.0, ge=0.0, le=10.0,
        description="silero: inside a background pause (background_speech_db), a frame must be this many dB louder "
        "than the pause threshold to count as the caller again (hysteresis: one loud background syllable does "
        "not restart the pause). 0: one threshold both ways.",
    )
    background_pause_hindsight: bool = Field(
        True,
        description="silero: when the smoothed level first calls a frame background, the pause is counted from "
        "the first of the frames just before it whose own energy was already under the caller's level (at "
        "most caller_level_smooth_s back), not from that frame: the smoothing's lag is not added to "
        "end_silence_s, so a babbling line ends turns as a quiet one does.",
    )
    vad_tick_ms: int = Field(
        20, ge=5, le=200,
        description="silero in the gateway: how often every call's waiting VAD frames are scored together "
        "(one batched run off the event loop).",
    )
    vad_max_delay_s: float = Field(
        1.0, gt=0.0, le=10.0,
        description="silero in the gateway: frames that waited longer (overload) are dropped and counted "
        "(emotune_errors_total{kind=\"vad_frames_dropped\"}).",
    )
    end_silence_s: float = Field(
        0.6, gt=0.0, le=5.0,
        description="Silence that ends a turn (end_of_turn: silence; with smart_turn, the fallback when the "
        "model has no answer in time).",
    )
    early_transcription_s: float | None = Field(
        0.25, gt=0.0,
        description="Silence inside a turn after which the turn so far is transcribed early (once per pause, "
        "only when a recognition slot is free); if the turn then ends without more speech, that transcript "
        "is used, so the caller's wait loses up to end_silence_s minus this. null: transcribe when the turn ends.",
    )
    end_of_turn: Literal["smart_turn", "silence"] = Field(
        "silence",
        description="smart_turn: after short_silence_s of silence the smart-turn v3.2 model (ONNX, "
        "models/encoders/smart-turn-v3.2, checked by sha256) says whether the turn is finished: yes ends it "
        "at once, no waits up to long_silence_s; silence: end_silence_s of silence ends every turn.",
    )
    end_of_turn_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="smart_turn: probability of a finished turn at which it ends."
    )
    short_silence_s: float = Field(
        0.2, gt=0.0, le=2.0, description="smart_turn: silence after speech before the model is asked (once per pause)."
    )
    long_silence_s: float = Field(
        2.0, gt=0.0, le=10.0, description="smart_turn: silence that ends a turn the model called unfinished."
    )
    end_of_turn_batch: int = Field(
        8, ge=1, le=64, description="smart_turn in the gateway: most turns scored per model run (bounded work)."
    )
    min_speech_s: float = Field(0.25, ge=0.0, description="Shorter bursts (a click, a cough) are not turns.")
    max_turn_s: float = Field(20.0, gt=1.0, description="A turn is cut here, even if the caller goes on.")
    preroll_s: float = Field(0.3, ge=0.0, le=2.0, description="Audio kept from before speech started.")
    barge_in_min_speech_s: float = Field(
        0.5, ge=0.0,
        description="Caller speech over the bot this long stops the bot (clear, in-flight reply "
        "cancelled); shorter speech (a backchannel) does not.",
    )
    barge_in_ignore_words: list[str] = Field(
        default_factory=lambda: ["uh-huh", "uh huh", "mhm", "mm-hmm", "hmm", "okay", "ok", "yeah", "yes",
                                 "right", "sure", "i see"],
        description="A turn spoken over the bot that is only these words is a backchannel: the bot "
        "goes on and the turn is not sent to the dialogue.",
    )
    greeting: str | None = Field(
        None, description="What the bot says when the call starts, in the default tone (null: the caller "
        "speaks first).",
    )
    reprompt_after_s: float | None = Field(
        None, gt=0.0,
        description="Caller silence (no speech, no keypad) after the bot finished speaking before a "
        "reprompt; null: never.",
    )
    reprompt: str = Field("Are you still there? How can I help you?", description="The reprompt.")
    max_reprompts: int = Field(
        2, ge=0, description="Reprompts in a row without an answer; then silence_action."
    )
    silence_action: Literal["handoff", "goodbye"] = Field(
        "goodbye", description="After max_reprompts unanswered: hand the call to a human or say goodbye."
    )
    goodbye: str = Field("I can't hear you, so I will end the call now. Goodbye.", description="Said before hanging up.")
    max_call_s: float = Field(
        1800.0, gt=0.0, description="Longest call; then max_call_action after max_call_message."
    )
    max_call_action: Literal["handoff", "goodbye"] = Field("handoff", description="What a too-long call gets.")
    max_call_message: str = Field(
        "I'm sorry, we have run out of time. Let me pass you to a colleague.",
        description="Said when max_call_s is reached.",
    )
    dtmf: dict[str, str] = Field(
        default_factory=lambda: {"0": "/request_human"},
        description="Keypad digit -> message sent to the dialogue as the caller's turn (Rasa intents "
        "as /intent); digits not listed are logged only. Not while a number is being typed (keypad).",
    )
    dtmf_max_per_s: float = Field(
        5.0, gt=0.0, description="Keypad digits per second a call may send; beyond it digits are dropped."
    )
    keypad: KeypadConfig = Field(
        default_factory=KeypadConfig, description="Numbers typed on the keypad (collected into one turn)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TurnTakingConfig:
        if self.silence_threshold >= self.speech_threshold:
            raise ValueError("silence_threshold must be below speech_threshold")
        if self.end_silence_s >= self.max_turn_s:
            raise ValueError("end_silence_s must be below max_turn_s")
        if self.early_transcription_s is not None and self.early_transcription_s >= self.end_silence_s:
            raise ValueError("early_transcription_s must be below end_silence_s (or null)")
        if not self.short_silence_s <= self.end_silence_s <= self.long_silence_s < self.max_turn_s:
            raise ValueError("need short_silence_s <= end_silence_s <= long_silence_s < max_turn_s")
        bad = [d for d in self.dtmf if d not in "0123456789*#ABCD" or len(d) != 1]
        if bad:
            raise ValueError(f"dtmf keys must be single keypad digits, got {bad}")
        return self


class TtsConfig(_Section):
    engine: str = Field(
        "kokoro",
        description="kokoro (neural, Kokoro-82M int8 ONNX, English; other languages speak with espeak-ng), "
        "espeak-ng (offline, Debian package), 'none' when the platform speaks the text, "
        "or an engine an installed package declares (entry point group emotune.tts_engines).",
    )
    voice: str = Field("en-us", description="The voice's language as an espeak-ng voice (en-us, en-gb, ko, ...).")
    kokoro_voice: str = Field(
        "af_heart",
        description="Kokoro voice (models/encoders/kokoro-voices/<name>.bin), or a blend 'af_heart:0.7,af_bella:0.3'.",
    )
    soft_voice: str = Field("af_sarah", description="Kokoro: blended in as a tone's pitch goes down (calm).")
    bright_voice: str = Field("af_bella", description="Kokoro: blended in as a tone's pitch goes up (upbeat).")
    blend_per_semitone: float = Field(
        0.12, ge=0, le=0.5, description="Kokoro: share of the soft/bright voice per semitone of the tone's pitch."
    )
    sentence_pause_s: float = Field(
        0.3, ge=0, le=2.0, description="Kokoro: silence between sentences at rate 1.0 (divided by rate squared)."
    )
    threads: int = Field(1, ge=1, le=16, description="Kokoro: onnxruntime threads per synthesis.")
    cache_dir: Path = Field(Path(".cache/tts"), description="Kokoro: rendered sentences on disk (replies are templates).")
    cache_max_mb: float = Field(256.0, ge=0, description="Kokoro: cache bound; least recently used go first. 0: no cache.")

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, name: str) -> str:
        return _known_engine("tts", name)


class DataSource(_Section):
    """One training corpus."""

    kind: Literal["ravdess", "emodb", "crema_d", "iemocap", "ravdess_original", "csv"]
    path: Path
    label_map: dict[str, str | None] = Field(
        default_factory=dict,
        description="Corpus label -> our class; null drops the label. Unmapped labels keep their name.",
    )


class TrainingConfig(_Section):
    """What `emotune train` and `emotune finetune` use."""

    hparams: Path = Path("emotion_models/hparams/ecapa_small.yaml")
    output_dir: Path = Path("results/train")
    sources: list[DataSource] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=lambda: list(CORE_EMOTIONS), min_length=2)
    epochs: int | None = Field(None, ge=1, description="Override the hparams' epoch count.")
    min_examples_per_class: int = Field(5, ge=1)
    # Measured on korean_operator (leave-one-speaker-out, telephone UA, Whisper base): head fine-tune 66.4% ->
    # 75.8%, probe 74.6% -> 75.3% with the two copies (models/emotune-ser-v2-wb-ko/finetune_report.json,
    # emotion_models/README.md); across corpora they do not help (emotion_models/results/v2/smart_turn_speed_perturb_loco.json).
    speed_perturb: list[float] = Field(
        default_factory=lambda: [0.9, 1.1],
        description="v2 fine-tuning: extra training copies of every clip played at these speeds (tempo and pitch "
        "together, 0.5-2.0); held-out speakers are scored on the original clips only. [] trains on the clips alone.",
    )

    @field_validator("speed_perturb")
    @classmethod
    def _speeds_in_range(cls, value: list[float]) -> list[float]:
        check_speed_perturb(value)
        return value


def check_speed_perturb(speeds: Sequence[float]) -> list[float]:
    """The training copies' playback speeds, sorted, without 1.0 (the clip itself); ValueError outside
    0.5..2.0 (slower or faster is no longer a plausible voice)."""
    bad = [f for f in speeds if not 0.5 <= f <= 2.0]
    if bad:
        raise ValueError(f"speeds {bad} are outside 0.5..2.0 (1.0 = the clip itself)")
    return sorted({float(f) for f in speeds} - {1.0})


class EmotuneConfig(BaseSettings):
    """The whole operator config. Environment variables override the file."""

    model_config = SettingsConfigDict(
        env_prefix="EMOTUNE_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    profile: Profile = Field(
        "contact_center",
        description="Deployment profile; its entry under `profiles:` in the file is merged over the rest.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    tone_policy: TonePolicy = Field(default_factory=TonePolicy)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    rasa: RasaConfig = Field(default_factory=RasaConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    turn_taking: TurnTakingConfig = Field(default_factory=TurnTakingConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the file (init kwargs carry the file's content).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _labels_known(self) -> EmotuneConfig:
        for rule in self.tone_policy.rules:
            if rule.emotion not in self.model.labels:
                raise ValueError(
                    f"tone_policy rule for '{rule.emotion}' names an emotion not in model.labels"
                )
        return self

    def turn_metadata(self, emotion: Mapping[str, Any] | None) -> dict[str, Any]:
        """Rasa message metadata for one caller turn: the emotion event with its intensity band,
        the tone this config's policy picks for it, and the escalation rule (see docs/CONTRACTS.md).
        Because the tone is chosen here, a tone-policy change needs no Rasa retraining."""
        metadata: dict[str, Any] = {
            "profile": self.profile,
            "escalation": self.escalation.model_dump(mode="json"),
            "tone": self.tone_policy.default_tone,
        }
        if emotion is not None:
            confidence = float(emotion.get("confidence", 0.0))
            metadata["emotion"] = {**emotion, "intensity": self.tone_policy.intensity(confidence)}
            metadata["tone"] = self.tone_policy.tone_for(str(emotion.get("label")), confidence)
        return metadata

    def resolve(self, path: Path) -> Path:
        """A config path made absolute (relative paths are relative to the project root)."""
        return path if path.is_absolute() else PROJECT_ROOT / path

    def model_path(self) -> Path:
        path = self.resolve(self.model.path)
        if path.suffix != ".onnx":
            return path  # a v2 model folder
        if self.model.variant == "int8":
            path = path.with_name(path.stem + ".int8.onnx")
        return path

    def sidecar_path(self) -> Path:
        if self.model.sidecar is not None:
            return self.resolve(self.model.sidecar)
        path = self.resolve(self.model.path)
        return path / "emotion.json" if path.suffix != ".onnx" else path.with_suffix(".json")


# Secrets never live in a file that might be committed: they come from the environment.
SECRET_FIELDS = (
    ("gateway", "auth_token"),
    ("gateway", "feed_token"),
    ("gateway", "metrics_token"),
    ("gateway", "twilio", "auth_token"),
    ("gateway", "genesys", "api_key"),
    ("gateway", "genesys", "client_secret"),
)


def _secrets_in_file(data: dict[str, Any]) -> list[str]:
    problems = []
    for path in SECRET_FIELDS:
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            env = "EMOTUNE_" + "__".join(p.upper() for p in path)
            problems.append(f"{'.'.join(path)}: secrets are not read from files; set {env} instead")
    return problems


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_profile(data: dict[str, Any], source: str, requested: str | None = None) -> dict[str, Any]:
    """Merge ``profiles[<profile>]`` over the file's sections (profile from the caller, env or file)."""
    profiles = data.pop("profiles", None)
    if profiles is None:
        return data
    if not isinstance(profiles, dict):
        raise ConfigError(source, ["profiles: expected a mapping of profile name -> overrides"])
    profile = requested or os.environ.get("EMOTUNE_PROFILE", data.get("profile", "contact_center"))
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        raise ConfigError(source, [f"profiles.{name}: unknown profile (use {', '.join(PROFILES)})" for name in unknown])
    chosen = profiles.get(profile) or {}
    if not isinstance(chosen, dict):
        raise ConfigError(source, [f"profiles.{profile}: expected a mapping of section overrides"])
    return _deep_merge(data, chosen)


def _describe(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown field (typo?)"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{loc}: {msg}{shown}"


def load_config(path: str | Path | None = None, **overrides: Any) -> EmotuneConfig:
    """Load and validate the operator config; ``None`` gives the defaults (plus env overrides)."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, [f"cannot read file: {exc.strerror or exc}"]) from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, ["top level must be a mapping of sections"])
        data = loaded or {}
        secret_problems = _secrets_in_file(data)
        if secret_problems:
            raise ConfigError(source, secret_problems)
        # A profile passed by the caller selects its section overrides too, as EMOTUNE_PROFILE does.
        data = _apply_profile(data, source, overrides.get("profile"))
    data.update(overrides)
    try:
        return EmotuneConfig(**data)
    except ValidationError as exc:
        env_keys = sorted(k for k in os.environ if k.startswith("EMOTUNE_"))
        problems = [_describe(e) for e in exc.errors()]
        if env_keys:
            problems.append(f"(environment overrides in effect: {', '.join(env_keys)})")
        raise ConfigError(source, problems) from None
