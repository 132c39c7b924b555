"""Exit heads on disk: what ``tierpipe exits attach`` writes and ``tierpipe partition --exits`` reads.

A file holds, per exit, its point, rule, the tap's shape and the head's output width (enough to build
the :func:`~partition.exit_train.default_head` again) and its weights, plus the calibration. Weights
only (``torch.load(weights_only=True)``): nothing in the file is executed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import ExitError
from .exit_calib import ExitCalibration
from .exits import ExitModel, with_exits

__all__ = ["save_exits", "load_exits"]

FORMAT = 1


def save_exits(model: ExitModel, calibration: ExitCalibration, path: str | Path) -> None:
    """Write ``model``'s default heads (see module docstring) and ``calibration`` to ``path``."""
    _, taps = model.taps(model.example_inputs)
    exits = []
    for spec, head, tap in zip(model.exits, model.heads, taps):
        last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
        exits.append(
            {
                "point": spec.name,
                "rule": spec.rule,
                "tap_shape": list(tap.shape),
                "out_features": last.out_features,
                "state": head.state_dict(),
            }
        )
    torch.save({"format": FORMAT, "exits": exits, "calibration": calibration.to_json()}, path)


def load_exits(model: nn.Module, example_inputs: tuple, path: str | Path) -> tuple[ExitModel, ExitCalibration]:
    """The :class:`ExitModel` of ``model`` with the heads saved in ``path``, and their calibration.

    Raises:
        ExitError: the file is missing or not an exits file, or its heads do not fit this model.
    """
    from .exit_train import default_head

    fix = "write it again with `tierpipe exits attach MODEL --data FRAMES --at POINT --out FILE`"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExitError(f"exits file {path}: not found; {fix}") from None
    except Exception as exc:
        raise ExitError(f"exits file {path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not data.get("exits"):
        raise ExitError(f"exits file {path}: not an exits file of format {FORMAT}; {fix}")
    heads, rules = {}, {}
    for e in data["exits"]:
        head = default_head(tuple(e["tap_shape"]), int(e["out_features"]))
        try:
            head.load_state_dict(e["state"])
        except RuntimeError as exc:
            raise ExitError(f"exits file {path}, exit {e['point']!r}: the head's weights do not fit ({str(exc)[:200]}); {fix}") from None
        heads[e["point"]], rules[e["point"]] = head.eval(), e["rule"]
    built = with_exits(model, heads, rule=rules, example_inputs=example_inputs)
    return built, ExitCalibration.from_json(data["calibration"])
