"""bot/nlu_report.py on Rasa-shaped cross-validation output: intent and entity F1, the pipeline
comparison, and the English report's shape unchanged (the intent report at the JSON's top level)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.devtools.rasa_stack import REPO_ROOT

_spec = importlib.util.spec_from_file_location("nlu_report", REPO_ROOT / "bot" / "nlu_report.py")
assert _spec is not None and _spec.loader is not None
nlu_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nlu_report)


def _row(f1: float, support: int) -> dict[str, float]:
    return {"precision": f1, "recall": f1, "f1-score": f1, "support": support}


def fake_run(path: Path, intent_f1: float, entity_f1: float | None, errors: int) -> Path:
    """A folder shaped like `rasa test nlu --cross-validation --out` (only the files the report reads)."""
    path.mkdir()
    intents = {"greet": _row(intent_f1, 10), "inform": _row(intent_f1, 10)}
    report: dict[str, Any] = {**intents, "accuracy": intent_f1, "macro avg": _row(intent_f1, 20),
                              "weighted avg": _row(intent_f1, 20)}  # fmt: skip
    (path / "intent_report.json").write_text(json.dumps(report), encoding="utf-8")
    wrong = [{"text": "x", "intent": "greet", "intent_prediction": {"name": "inform", "confidence": 0.5}}] * errors
    (path / "intent_errors.json").write_text(json.dumps(wrong), encoding="utf-8")
    if entity_f1 is not None:
        entities = {"genre": _row(entity_f1, 5), "micro avg": _row(entity_f1, 5), "macro avg": _row(entity_f1, 5),
                    "weighted avg": _row(entity_f1, 5)}  # fmt: skip
        (path / nlu_report.ENTITY_REPORT).write_text(json.dumps(entities), encoding="utf-8")
    return path


@pytest.fixture
def bot_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ko_bot"
    folder.mkdir()
    (folder / "config.yml").write_text("pipeline:\n  - name: bot.components.kiwi_tokenizer.KiwiTokenizer\n")
    (folder / "config.whitespace.yml").write_text("pipeline:\n  - name: WhitespaceTokenizer\n")
    return folder


def test_comparison_and_entity_f1(tmp_path: Path, bot_dir: Path) -> None:
    chosen = nlu_report.summarise_run("config.yml", fake_run(tmp_path / "kiwi", 0.93, 0.88, 2))
    other = nlu_report.summarise_run("config.whitespace.yml", fake_run(tmp_path / "ws", 0.81, 0.42, 7))
    line = nlu_report.write_report("ko_bot", chosen, [other], folds=3, target=0.85, bot_dir=bot_dir)
    assert line == "ko_bot: weighted intent F1 0.930, entity F1 0.880"
    data = json.loads((bot_dir / "nlu_cross_validation.json").read_text(encoding="utf-8"))
    assert data["weighted avg"]["f1-score"] == 0.93 and data["entity_report"]["genre"]["f1-score"] == 0.88
    assert data["comparison"]["config.whitespace.yml"] == {
        "intent_f1_weighted": 0.81, "intent_f1_macro": 0.81, "intent_accuracy": 0.81,
        "entity_f1_weighted": 0.42, "errors": 7,
    }  # fmt: skip
    text = (bot_dir / "nlu_cross_validation.md").read_text(encoding="utf-8")
    assert "target 0.85: **met**" in text and "PYTHONPATH=../.. rasa test nlu" in text
    assert "| `config.whitespace.yml` | 0.810 |" in text and "--versus config.whitespace.yml=" in text
    assert "- greet -> inform: 2" in text


def test_single_run_without_entities_keeps_the_english_shape(tmp_path: Path, bot_dir: Path) -> None:
    run = nlu_report.summarise_run("config.whitespace.yml", fake_run(tmp_path / "run", 0.88, None, 1))
    assert nlu_report.write_report("ko_bot", run, [], folds=5, target=0.90, bot_dir=bot_dir).endswith("0.880")
    data = json.loads((bot_dir / "nlu_cross_validation.json").read_text(encoding="utf-8"))
    assert "entity_report" not in data and "comparison" not in data and data["greet"]["f1-score"] == 0.88
    text = (bot_dir / "nlu_cross_validation.md").read_text(encoding="utf-8")
    assert "target 0.90: **missed**" in text and "PYTHONPATH" not in text and "Entity F1" not in text


def test_versus_needs_config_and_run_dir() -> None:
    with pytest.raises(SystemExit):
        nlu_report.main(["ko_contact_center", "/tmp/x", "--versus", "config.whitespace.yml"])


def test_a_run_that_kept_the_fallback_counts_it_wrong_and_says_so(tmp_path: Path, bot_dir: Path) -> None:
    """bot/nlu_cv.py's runs: ``nlu_fallback`` is a prediction (support 0), not a class of the table or
    of the macro average; the report says how many messages fell back and how many DIET had right."""
    run = fake_run(tmp_path / "kept", 0.9, None, 0)
    report = json.loads((run / "intent_report.json").read_text(encoding="utf-8"))
    report["nlu_fallback"] = _row(0.0, 0)
    (run / "intent_report.json").write_text(json.dumps(report), encoding="utf-8")
    errors = [{"text": "hm", "intent": "greet", "intent_prediction": {"name": "nlu_fallback", "confidence": 0.4}},
              {"text": "yo", "intent": "inform", "intent_prediction": {"name": "nlu_fallback", "confidence": 0.4}}]  # fmt: skip
    (run / "intent_errors.json").write_text(json.dumps(errors), encoding="utf-8")
    fallbacks = [{"text": "hm", "diet": [{"name": "greet", "confidence": 0.35}, {"name": "inform", "confidence": 0.3}]},
                 {"text": "yo", "diet": [{"name": "greet", "confidence": 0.5}, {"name": "inform", "confidence": 0.45}]}]  # fmt: skip
    (run / "fallbacks.json").write_text(json.dumps(fallbacks), encoding="utf-8")
    (bot_dir / "config.yml").write_text("pipeline:\n  - name: FallbackClassifier\n    threshold: 0.4\n"
                                        "    ambiguity_threshold: 0.1\n")  # fmt: skip
    summary = nlu_report.summarise_run("config.yml", run)
    assert summary.macro_f1 == 0.9  # not dragged down by the nlu_fallback row
    nlu_report.write_report("ko_bot", summary, [], folds=5, target=0.90, bot_dir=bot_dir)
    text = (bot_dir / "nlu_cross_validation.md").read_text(encoding="utf-8")
    assert "`python ../nlu_cv.py test nlu --nlu data/nlu.yml" in text and "| nlu_fallback |" not in text
    assert "(confidence below 0.4, or the two best intents within 0.1) is `nlu_fallback`, counted wrong: 2" in text
    assert "1 of which the classifier's best intent had right" in text and "- greet -> nlu_fallback: 1" in text
