"""QueueNet: halting vehicles per lane of an approach (1 to 5 lanes) from one camera frame.

    frame  uint8 [B, 3, 128, 32] -> float in 0..1
    stem   conv 3->12, stride 2      [B, 12, 64, 16]
    down   conv 12->16, stride 2     [B, 16, 32, 8]
    neck   conv 16->8, stride (2, 1) [B, 8, 16, 8]    1,024 values: a natural cut (1 KiB in int8 vs a 12 KiB frame)
    body   2 x conv 8->32 / 32->32   [B, 32, 16, 8]
    head   linear 4096->64->5        [B, 5]            vehicles halting on lanes 0 (rightmost) .. 4

An approach with fewer than 5 lanes shows verge where the others would be; their outputs are
meaningless and masked by the caller (training masks them in the loss).

Plain torch, 277 k parameters (1.1 MB); the shipped weights were trained by
``python -m examples.smart_city.train`` on SUMO networks of 1 to 5 lanes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import HERE
from .camera import MAX_LANES as LANES

__all__ = ["QueueNet", "WEIGHTS", "SAMPLE_FRAMES", "LANES", "load_model", "example_input"]

WEIGHTS = HERE / "data" / "queuenet.pt"
SAMPLE_FRAMES = WEIGHTS.with_name("sample_frames.npy")  # 16 busy frames of midtown (written by train.py)


class QueueNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU())
        self.neck = nn.Sequential(nn.Conv2d(16, 8, 3, stride=(2, 1), padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16 * 8, 64), nn.ReLU(), nn.Linear(64, LANES))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame.float() / 255.0
        return self.head(self.body(self.neck(self.down(self.stem(x)))))


def example_input(batch: int = 1) -> tuple[torch.Tensor]:
    from .camera import H, W

    return (torch.zeros(batch, 3, H, W, dtype=torch.uint8),)


def load_model(path: str | Path | None = None) -> tuple[QueueNet, tuple[torch.Tensor]]:
    """The trained model in eval mode and an example input: ``tierpipe run examples.smart_city.model:load_model``."""
    from partition.errors import TierpipeError

    path = Path(path or WEIGHTS)
    model = QueueNet()
    if not path.exists():
        raise TierpipeError(f"no QueueNet weights at {path}; train them with `python -m examples.smart_city.train`")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), example_input()
