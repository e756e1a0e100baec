"""Seed ensembles of the v2 head (emotion_models/ensemble_v2.py): one graph averaging its members."""

from __future__ import annotations

import numpy as np
import torch

from emotion_models.head import EmotionHead, HeadConfig, HeadEnsemble


def _head(seed: int) -> EmotionHead:
    torch.manual_seed(seed)
    return EmotionHead(HeadConfig(layers=3, dim=8, hidden=6, attention=4), np.ones((3, 8), np.float32)).eval()


def test_the_ensemble_is_the_mean_of_its_members_logits_and_arousal() -> None:
    members = [_head(s) for s in (1, 2, 3)]
    ensemble = HeadEnsemble(members).eval()
    states, offset = torch.randn(5, 3, 10, 8), torch.zeros(5, 3, 8)
    with torch.no_grad():
        logits, arousal = ensemble(states, offset)
        outputs = [m(states, offset) for m in members]
    torch.testing.assert_close(logits, torch.stack([o[0] for o in outputs]).mean(0))
    torch.testing.assert_close(arousal, torch.stack([o[1] for o in outputs]).mean(0))
    torch.testing.assert_close(ensemble.layer_weights(), torch.stack([m.layer_weights() for m in members]).mean(0))
    assert not torch.allclose(outputs[0][0], outputs[1][0])  # different initialisations, different members
    assert len(ensemble.state_dict()) == 3 * len(members[0].state_dict())  # every member is saved with it
