"""The emotune command: config check, reference, and honest 'not built' answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emotune.cli import EXIT_CONFIG, main
from emotune.config import PROJECT_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emotune", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )


def test_config_check_passes_on_shipped_file() -> None:
    result = _run("config", "check", "config.yml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_config_check_names_each_bad_field(tmp_path: Path) -> None:
    data = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text())
    data["gateway"]["port"] = "http"
    data["smoothing"]["hysteresis"] = 2
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(data))
    result = _run("config", "check", str(broken))
    assert result.returncode == EXIT_CONFIG
    assert "gateway.port" in result.stderr
    assert "smoothing.hysteresis" in result.stderr
    assert str(broken) in result.stderr


def test_config_reference_lists_every_section(tmp_path: Path) -> None:
    out = tmp_path / "ref.md"
    assert main(["config", "reference", "--output", str(out)]) == 0
    text = out.read_text()
    for field in ("gateway.port", "tone_policy.rules", "escalation.streak_turns", "model.variant"):
        assert f"`{field}`" in text
    assert "EMOTUNE_GATEWAY__PORT" in text


def test_docs_reference_is_up_to_date() -> None:
    from emotune.reference import config_reference_markdown

    committed = (PROJECT_ROOT / "docs" / "config-reference.md").read_text()
    assert committed == config_reference_markdown(), "run: emotune config reference --output docs/config-reference.md"


def test_unknown_subcommand_fails() -> None:
    result = _run("fly")
    assert result.returncode != 0


def test_help_lists_all_subcommands() -> None:
    result = _run("--help")
    for name in ("config", "train", "export", "serve", "demo", "bench", "finetune", "report"):
        assert name in result.stdout


def test_part_not_built_says_so() -> None:
    import pytest

    from emotune.cli import _target
    from emotune.errors import NotBuiltError

    with pytest.raises(NotBuiltError, match="not built"):
        _target("emotion_models.no_such_module:run")
    with pytest.raises(NotBuiltError, match="not built"):
        _target("emotune.config:no_such_function")


def test_serve_takes_the_options_the_readme_promises(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--port", "--log-format", "--log-level", "--log-dir", "--config"):
        assert option in shown


def test_pilot_names_the_bot_model_explicitly_and_refuses_a_missing_one(tmp_path: Path) -> None:
    result = _run("pilot", "--bot-model", str(tmp_path / "nope.tar.gz"))
    assert result.returncode == 2 and "no such trained Rasa model file" in result.stdout + result.stderr
    result = _run("pilot")
    assert result.returncode != 0 and "--bot-model" in result.stderr
