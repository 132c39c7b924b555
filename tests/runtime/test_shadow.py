"""The shadow check: delivered results against the full model on a sampled share of frames (no Ray)."""

import pytest
import torch
from torch import nn

from runtime.shadow import ShadowCheck


def test_it_samples_its_share_and_measures_the_error_of_what_was_delivered():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).eval()
    check = ShadowCheck(model, share=0.25, kind="error", seed=1)
    frames = {(0, seq): torch.randn(1, 4) for seq in range(400)}
    for key, x in frames.items():
        check.offer(key, (x,))
    sampled = set(check.pending)
    assert 70 <= len(sampled) <= 130  # about a quarter of 400
    with torch.inference_mode():
        for key, x in frames.items():  # every third frame "exited" with an answer 0.5 off on every output
            out = model(x) + (0.5 if key[1] % 3 == 0 else 0.0)
            check.check(key, out)
    wrong = sum(1 for key in sampled if key[1] % 3 == 0)
    s = check.summary()
    assert s["frames"] == len(sampled) and not check.pending
    assert s["error"] == pytest.approx(0.5 * wrong / len(sampled), abs=1e-4)


def test_agreement_counts_answers_with_the_full_models_argmax_and_unsampled_results_are_ignored():
    model = nn.Identity()
    check = ShadowCheck(model, share=1.0, kind="agreement")
    check.offer("a", (torch.tensor([[0.1, 0.9]]),))
    check.offer("b", (torch.tensor([[0.8, 0.2]]),))
    check.check("a", torch.tensor([[0.0, 1.0]]))  # same argmax
    check.check("b", torch.tensor([[0.0, 1.0]]))  # another argmax
    check.check("never offered", torch.tensor([[1.0, 0.0]]))
    assert check.summary() == {"share": 1.0, "frames": 2, "agreement": 0.5}
    with pytest.raises(ValueError, match="between 0 and 1"):
        ShadowCheck(model, share=1.5)
