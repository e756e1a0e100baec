"""The operator config: the shipped file, each kind of bad field, env overrides, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emotune.config import PROJECT_ROOT, EmotuneConfig, load_config
from emotune.errors import ConfigError, EmotuneError

SHIPPED = PROJECT_ROOT / "config.yml"


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_config_is_valid_and_matches_defaults_where_unset() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.profile == "contact_center"
    assert cfg.escalation.streak_turns == 3
    assert cfg.tone_policy.tone_for("angry", 0.9) == "calm"
    assert cfg.model_path().name == "emotune-ser-v2-st"  # a v2 folder
    assert cfg.sidecar_path().name == "emotion.json"


@pytest.mark.parametrize(
    ("mutate", "expected_fragment"),
    [
        (lambda d: d["gateway"].update(port="eighty"), "gateway.port"),
        (lambda d: d["gateway"].update(port=70000), "gateway.port"),
        (lambda d: d["streaming"].update(hop_s=3.0, window_s=2.0), "hop_s must not exceed window_s"),
        (lambda d: d["model"].update(variant="int4"), "model.variant"),
        (lambda d: d["gateway"].update(prot=1), "gateway.prot: unknown field"),
        (lambda d: d.update(tone_plicy={}), "tone_plicy: unknown field"),
        (lambda d: d["tone_policy"]["rules"].append({"emotion": "bored", "tone": "calm"}), "bored"),
        (lambda d: d["tone_policy"]["rules"].append({"emotion": "sad", "tone": "jolly"}), "jolly"),
        (lambda d: d["tone_policy"].update(intensity_bands=[0.8, 0.2]), "intensity_bands"),
        (lambda d: d["rasa"].update(url="ftp://x"), "rasa.url"),
        (lambda d: d["gateway"].update(tls_cert="/tmp/cert.pem"), "tls_cert and tls_key"),
        (lambda d: d["smoothing"].update(ema_alpha=0), "smoothing.ema_alpha"),
        (lambda d: d["asr"].update(engine="whisper-cloud"), "asr.engine"),
        (lambda d: d["training"].update(speed_perturb=[0.9, 3.0]), "training.speed_perturb"),
        (lambda d: d["gateway"]["twilio"].update(transfer_announcement_language="korean"),
         "gateway.twilio.transfer_announcement_language"),
    ],
)
def test_each_bad_field_is_named(tmp_path: Path, mutate, expected_fragment: str) -> None:
    data = _shipped()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert expected_fragment in message
    assert str(tmp_path / "config.yml") in message


def test_several_bad_fields_give_one_line_each(tmp_path: Path) -> None:
    data = _shipped()
    data["gateway"]["port"] = -1
    data["escalation"]["streak_turns"] = 0
    data["model"]["intra_op_threads"] = "many"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    fields = [p.split(":")[0] for p in info.value.problems]
    assert fields == ["model.intra_op_threads", "escalation.streak_turns", "gateway.port"]


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    data = _shipped()
    data["gateway"]["genesys"]["client_secret"] = "c2VjcmV0"
    with pytest.raises(ConfigError, match="EMOTUNE_GATEWAY__GENESYS__CLIENT_SECRET"):
        load_config(_write(tmp_path, data))


def test_not_yaml_and_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("gateway: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml")


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTUNE_GATEWAY__PORT", "9001")
    monkeypatch.setenv("EMOTUNE_ESCALATION__STREAK_TURNS", "5")
    monkeypatch.setenv("EMOTUNE_GATEWAY__GENESYS__CLIENT_SECRET", "c2VjcmV0")
    cfg = load_config(SHIPPED)
    assert cfg.gateway.port == 9001
    assert cfg.escalation.streak_turns == 5
    assert cfg.gateway.genesys.client_secret is not None
    assert cfg.gateway.genesys.client_secret.get_secret_value() == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(cfg)  # secrets do not leak into logs


def test_bad_env_override_is_reported_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTUNE_GATEWAY__PORT", "not-a-port")
    with pytest.raises(ConfigError) as info:
        load_config(SHIPPED)
    assert "gateway.port" in str(info.value)
    assert "EMOTUNE_GATEWAY__PORT" in str(info.value)


def test_config_error_is_an_emotune_error() -> None:
    assert issubclass(ConfigError, EmotuneError)


def test_tone_policy_intensity_bands() -> None:
    policy = EmotuneConfig().tone_policy
    assert policy.intensity(0.3) == "low"
    assert policy.intensity(0.5) == "medium"
    assert policy.intensity(0.9) == "high"
    # happy needs medium intensity for the upbeat tone
    assert policy.tone_for("happy", 0.3) == "standard"
    assert policy.tone_for("happy", 0.6) == "upbeat"
    assert policy.tone_for("neutral", 0.99) == "standard"


def test_profile_overrides_merge_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    base = load_config(SHIPPED)
    assert base.model.variant == "fp32" and base.escalation.streak_turns == 3
    monkeypatch.setenv("EMOTUNE_PROFILE", "in_car")
    car = load_config(SHIPPED)
    assert car.profile == "in_car"
    assert car.model.path.as_posix().endswith("models/emotune-ser-v1-student/emotion.onnx")  # best at >= 200 streams
    assert car.model.variant == "fp32"
    assert car.streaming.hop_s == 0.5
    assert car.escalation.streak_turns == 2
    assert car.tone_policy.tone_for("happy", 0.6) == "standard"  # in-car needs high intensity
    assert car.gateway.port == base.gateway.port  # untouched sections stay


def test_bad_profile_entries_are_named(tmp_path: Path) -> None:
    data = _shipped()
    data["profiles"]["truck"] = {}
    with pytest.raises(ConfigError, match="profiles.truck"):
        load_config(_write(tmp_path, data))
    data = _shipped()
    data["profile"] = "in_car"
    data["profiles"]["in_car"]["streaming"]["hop_s"] = "fast"
    with pytest.raises(ConfigError, match="streaming.hop_s"):
        load_config(_write(tmp_path, data))
