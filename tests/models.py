"""Small models and random graphs for the tests: chains, skips, concat branches, multi-input/output."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from partition.graph import Graph, Node, TensorSpec


class Chain(nn.Module):
    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)])

    def forward(self, x):
        return self.layers(x)


class Skip(nn.Module):
    """Residual blocks: a value consumed on two paths."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a)) + a
        c = torch.relu(self.conv3(b)) + b + a
        return self.head(c.mean(dim=(2, 3)))


class Concat(nn.Module):
    """Inception-like branches joined by a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.Conv2d(4, 4, 3, padding=1))
        self.b3 = nn.MaxPool2d(3, 1, 1)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        return self.out(torch.cat([self.b1(s), self.b2(s), self.b3(s)], dim=1))


class MultiIO(nn.Module):
    """Two inputs (image, metadata), two outputs (logits dict and a feature map)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.meta_proj = nn.Linear(6, 4)
        self.cls = nn.Linear(8, 3)

    def forward(self, image, meta):
        f = torch.relu(self.conv(image))
        pooled = f.mean(dim=(2, 3))
        joint = torch.cat([pooled, torch.tanh(self.meta_proj(meta))], dim=1)
        return {"logits": self.cls(joint), "features": f}


def _seeded(build):
    """A factory whose weights and example inputs are the same on every call."""

    def make():
        torch.manual_seed(0)
        return build()

    return make


SMALL_MODELS = {
    "chain": _seeded(lambda: (Chain(), (torch.randn(2, 16),))),
    "skip": _seeded(lambda: (Skip(), (torch.randn(1, 3, 16, 16),))),
    "concat": _seeded(lambda: (Concat(), (torch.randn(1, 3, 16, 16),))),
    "multi_io": _seeded(lambda: (MultiIO(), (torch.randn(2, 3, 8, 8), torch.randn(2, 6)))),
}


def random_graph(rng: np.random.Generator, n: int, chain: bool = False, inputs: int = 1) -> Graph:
    """A random DAG of ``n`` nodes in topological order (first ``inputs`` are inputs), random sizes."""
    nodes = []
    for v in range(n):
        if v < inputs:
            preds = ()
        elif chain:
            preds = (f"n{v - 1}",)
        else:
            count = int(rng.integers(1, min(v, 3) + 1))
            preds = tuple(f"n{p}" for p in sorted(set(rng.choice(v, size=count, replace=False).tolist())))
        nbytes = int(rng.integers(1, 200)) * 1000
        nodes.append(
            Node(
                f"n{v}",
                "input" if v < inputs else "compute",
                "op",
                f"m{v}",
                preds,
                (TensorSpec((nbytes // 4,), "float32", nbytes),),
                0,
                int(rng.integers(0, 100)) * 1000,
                0.0,
            )
        )
    consumed = {p for node in nodes for p in node.inputs}
    outputs = [node.name for node in nodes if node.name not in consumed and node.op != "input"] or [nodes[-1].name]
    return Graph(nodes, [f"n{i}" for i in range(inputs)], outputs, module=None, timing="analytic")


class CamNet(nn.Module):
    """A small camera model: a convolutional stem that shrinks the image 8x, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 8))

    def forward(self, x):
        return self.head(self.stem(x))


# seconds per stem convolution on a camera (as measured on a Raspberry-Pi-class CPU): with these the best
# plan on smart_city sends the image at 20 Mbit/s and runs the stem on the camera at 2 Mbit/s
CAMNET_PROFILES = {"device": {"stem_0": 0.03, "stem_2": 0.03, "stem_4": 0.03}}


def camnet():
    """``tests.models:camnet`` for the CLI: a seeded CamNet and a 32 x 32 example image."""
    torch.manual_seed(0)
    return CamNet().eval(), (torch.randn(1, 3, 32, 32),)
