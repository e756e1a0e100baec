"""`rasa test nlu` as production parses: the FallbackClassifier's verdict is kept (runs in .venv-rasa).

Rasa 3.6's NLU evaluation (``rasa/nlu/test.py: get_eval_data``) undoes every FallbackClassifier prediction
before scoring, so a message the bot would answer with "sorry, could you rephrase" (confidence below
``threshold``, or the two best intents within ``ambiguity_threshold``) is scored as if the classifier's top intent
had been acted on. This wrapper runs the same CLI with that undo switched off: such a message is scored
as ``nlu_fallback``, i.e. wrong. It also fixes the fold split (``--seed``, default 0; Rasa shuffles the
stratified folds with numpy's global generator) and writes ``fallbacks.json`` in ``--out``: for each
fallback the text, the classifier's best two intents and their confidences (what Rasa would have scored).

    cd bot/contact_center && ../../.venv-rasa/bin/python ../nlu_cv.py test nlu --nlu data/nlu.yml \\
        --config config.yml --cross-validation --folds 5 --out /tmp/cv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _out_dir(argv: list[str]) -> Path:
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--out="):
            return Path(arg.partition("=")[2])
    return Path("results")


def _pop_seed(argv: list[str]) -> int:
    if "--seed" in argv:
        i = argv.index("--seed")
        seed = int(argv[i + 1])
        del argv[i : i + 2]
        return seed
    return 0


def main(argv: list[str]) -> int:
    import numpy as np
    import rasa.nlu.test as rasa_test
    from rasa.__main__ import main as rasa_main
    from rasa.nlu.classifiers import fallback_classifier

    argv = list(argv)
    seed = _pop_seed(argv)
    np.random.seed(seed)
    fallbacks: list[dict[str, Any]] = []
    # Cross-validation also parses each fold's training data (train figures): record the test folds only.
    phase = {"test": True}
    combine_result = rasa_test.combine_result

    async def combine_and_mark(*args: Any, **kwargs: Any) -> Any:
        phase["test"] = len(args) > 5 or kwargs.get("intent_results") is not None
        return await combine_result(*args, **kwargs)

    def keep_fallback(prediction: dict[str, Any]) -> dict[str, Any]:
        if not phase["test"]:
            return prediction
        ranking = prediction.get("intent_ranking", [])[1:3]
        fallbacks.append({"text": prediction.get("text"),
                          "diet": [{"name": r.get("name"), "confidence": r.get("confidence")} for r in ranking]})  # fmt: skip
        return prediction

    fallback_classifier.undo_fallback_prediction = keep_fallback  # type: ignore[assignment]
    rasa_test.combine_result = combine_and_mark  # type: ignore[assignment]
    sys.argv = ["rasa", *argv]
    try:
        rasa_main()
    finally:
        out = _out_dir(argv)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fallbacks.json").write_text(json.dumps(fallbacks, indent=1) + "\n", encoding="utf-8")
        (out / "run.json").write_text(json.dumps({"seed": seed, "argv": argv}) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
