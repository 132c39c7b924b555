"""A small model zoo in plain torch: random weights, nothing downloaded.

``get_model("resnet18")`` returns ``(model, example_inputs)``; any
``package.module:function`` path works too, the function returning a model or a
``(model, example_inputs)`` pair.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable

import torch
from torch import nn

from .errors import CaptureError

__all__ = ["ZOO", "get_model", "model_names"]


# ------------------------------------------------------------------ ResNet
class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.down(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.down(x))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block: type, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        cin, stages = 64, []
        for i, n in enumerate(layers):
            width = 64 * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ------------------------------------------------------------------ MobileNetV2
class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, stride), as in Sandler et al. 2018
    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))]
        cin = 32
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------ ViT
class _EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """ViT-Tiny-like: 16x16 patches, 192-d, 6 blocks, class token."""

    def __init__(self, image: int = 224, patch: int = 16, dim: int = 192, depth: int = 6, heads: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[_EncoderBlock(dim, heads, dim * 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # [b, patches, dim]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# ------------------------------------------------------------------ U-Net
def _double_conv(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net for segmentation: 3 down, 3 up, concatenated skips."""

    def __init__(self, classes: int = 4, base: int = 16) -> None:
        super().__init__()
        c = [base, base * 2, base * 4, base * 8]
        self.inc = _double_conv(3, c[0])
        self.down = nn.ModuleList([_double_conv(c[i], c[i + 1]) for i in range(3)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, 2) for i in reversed(range(3))])
        self.dec = nn.ModuleList([_double_conv(c[i] * 2, c[i]) for i in reversed(range(3))])
        self.out = nn.Conv2d(c[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(nn.functional.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.out(x)


def _vision(build: Callable[[], nn.Module], size: int = 224) -> Callable[[], tuple[nn.Module, tuple]]:
    def make() -> tuple[nn.Module, tuple]:
        torch.manual_seed(0)
        return build().eval(), (torch.randn(1, 3, size, size),)

    return make


ZOO: dict[str, Callable[[], tuple[nn.Module, tuple]]] = {
    "resnet18": _vision(lambda: ResNet(_Basic, [2, 2, 2, 2])),
    "resnet50": _vision(lambda: ResNet(_Bottleneck, [3, 4, 6, 3])),
    "mobilenet_v2": _vision(MobileNetV2),
    "vit": _vision(VisionTransformer),
    "unet": _vision(UNet, 128),
}


def model_names() -> list[str]:
    return sorted(ZOO)


def get_model(name: str, input_shape: list[int] | None = None) -> tuple[nn.Module, tuple]:
    """Return ``(model in eval mode, example_inputs)`` for a zoo name or ``module:function`` path.

    ``module:function`` is imported as ``python -m`` would: the working directory comes first on the
    path. ``input_shape`` replaces the example input by a random tensor of that shape (and the
    example's dtype); :func:`partition.inputs.frame_inputs` does the same for a topology's sources.

    Raises:
        CaptureError: unknown name, a path that does not import, a function that fails.

    >>> model, inputs = get_model("resnet18")
    >>> model(*inputs).shape
    torch.Size([1, 1000])
    """
    from .inputs import frame_inputs

    if name in ZOO:
        model, inputs = ZOO[name]()
    else:
        model, inputs = _load(name)
    if input_shape is not None:
        inputs = frame_inputs(inputs, input_shape, None, "--input-shape")
    return model, inputs


def _load(name: str) -> tuple[nn.Module, tuple]:
    if ":" not in name:
        raise CaptureError(f"unknown model {name!r}: zoo models are {model_names()}; or give 'package.module:function'")
    mod_name, _, fn_name = name.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: ./mymodel.py is importable
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        raise CaptureError(f"cannot load model {name!r}: {_missing(exc, mod_name)}") from None
    except Exception as exc:
        raise CaptureError(f"cannot load model {name!r}: importing {mod_name} failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise CaptureError(f"cannot load model {name!r}: {mod_name} has no function {fn_name!r}")
    required = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise CaptureError(
            f"{name!r} takes arguments ({', '.join(required)}); give a function that takes none and "
            "returns an nn.Module or (model, example_inputs)"
        )
    try:
        made = fn()
    except ModuleNotFoundError as exc:
        raise CaptureError(f"calling {name!r} failed: {_missing(exc, mod_name)}") from None
    except Exception as exc:
        raise CaptureError(f"calling {name!r} failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        model, inputs = made
        return model.eval(), tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if isinstance(made, nn.Module):
        return made.eval(), ()
    raise CaptureError(f"{name!r} returned {type(made).__name__}; return an nn.Module or (model, example_inputs)")


def _missing(exc: ModuleNotFoundError, mod_name: str) -> str:
    """The message for a module that is not installed, with the extra that brings it."""
    from .extras import EXTRAS

    top = (exc.name or "").split(".")[0]
    if top == mod_name.split(".")[0]:
        return f"no module {mod_name!r} (run from the folder that holds it, as with `python -m`, or put that folder on PYTHONPATH)"
    extra = next((e for e, mods in EXTRAS.items() if top in mods), None)
    hint = f"pip install 'tierpipe[{extra}]'" if extra else f"pip install {top}"
    return f"it needs {top!r}, which is not installed: {hint}"
