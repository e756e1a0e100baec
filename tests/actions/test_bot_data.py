"""`rasa data validate` on both shipped bots (domain, NLU, stories and rules agree)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from tracker_fixtures import BOTS, REPO_ROOT, load_domain


def _responses_only_uttered_by_actions(bot: str) -> set[str]:
    # Responses that custom actions utter (Rasa cannot see that, so it warns they are unused).
    text = "\n".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "actions").glob("*.py"))
    uttered = {name for name in load_domain(bot)["responses"] if f'"{name}"' in text}
    # utter_default is said by Rasa's own action_default_fallback.
    return uttered | {"utter_default"}


@pytest.mark.parametrize("bot", BOTS)
def test_rasa_data_validate(bot: str) -> None:
    bot_dir = REPO_ROOT / "bot" / bot
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate", "--config", "config.yml"],
        cwd=bot_dir,
        # The Korean bots' tokenizer is bot/components/ (RasaStack puts the repo root on PYTHONPATH too).
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "No story structure conflicts found" in output
    # The only warnings allowed are "unused" responses that our actions utter.
    unused = set(re.findall(r"The utterance '(\w+)' is not used in any story or rule", output))
    assert unused <= _responses_only_uttered_by_actions(bot), unused - _responses_only_uttered_by_actions(bot)
    for line in output.splitlines():
        assert not re.search(r"\bERROR\b", line), line


@pytest.mark.parametrize("bot", BOTS)
def test_nlu_has_enough_examples_per_intent(bot: str) -> None:
    import yaml

    nlu = yaml.safe_load((REPO_ROOT / "bot" / bot / "data" / "nlu.yml").read_text(encoding="utf-8"))["nlu"]
    counts = {
        block["intent"]: len([line for line in block["examples"].splitlines() if line.strip()])
        for block in nlu
    }
    assert set(counts) == set(load_domain(bot)["intents"])
    assert min(counts.values()) >= 15, counts
