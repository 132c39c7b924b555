"""``tierpipe exits attach`` and ``tierpipe partition --exits``: in-process, no Ray."""

import numpy as np
import torch

from partition.exit_file import load_exits
from runtime.cli import main
from tests.models import camnet


def said(capsys) -> str:
    """What the command printed, its lines joined (rich wraps long messages)."""
    return " ".join(capsys.readouterr().out.split())


def test_attach_writes_heads_that_partition_chooses_with_the_cut(tmp_path, capsys):
    frames = np.random.default_rng(0).standard_normal((96, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "exits.pt"
    argv = ["exits", "attach", "tests.models:camnet", "--data", str(tmp_path / "frames.npy"), "--at", "stem", "--steps", "40"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = said(capsys)
    assert "exit rate" in printed and "agreement" in printed and "stem_5" in printed  # the value leaving module 'stem'
    model, example = camnet()
    em, cal = load_exits(model, example, out)
    # the saved heads are the trained ones: the same answers as a fresh calibration of the loaded model
    with torch.inference_mode():
        _, taps = em.taps((torch.from_numpy(frames[:4]),))
    assert cal.frames == 96 and [e.node for e in em.exits] == ["stem_5"] and taps[0].shape == (4, 16, 4, 4)
    code = main(
        ["partition", "tests.models:camnet", "--topology", "three_tier", "--pin", "stem=device", "--pin", "head=edge"]
        + ["--exits", str(out), "--exit-agreement", "0.5"]
    )
    assert code == 0
    printed = said(capsys)
    assert "early exits: stem on device" in printed and "classes (live exits x thresholds x tiers) solved" in printed


def test_bad_exit_arguments_say_how_to_fix(tmp_path, capsys):
    assert main(["partition", "tests.models:camnet", "--exit-agreement", "0.9"]) == 2
    assert "need --exits FILE" in said(capsys)
    assert main(["partition", "tests.models:camnet", "--exits", str(tmp_path / "none.pt"), "--exit-agreement", "0.9"]) == 2
    assert "not found; write it again with `tierpipe exits attach" in said(capsys)
    argv = ["exits", "attach", "tests.models:camnet", "--data", str(tmp_path / "x.npy"), "--at", "stem"]
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 8, 8), dtype=np.float32))
    assert main(argv) == 2
    assert "frames of shape [3, 8, 8], tests.models:camnet takes [3, 32, 32]" in said(capsys)
