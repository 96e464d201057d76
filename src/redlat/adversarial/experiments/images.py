"""Image data and classifiers for the vision experiments.

`digits` (scikit-learn's bundled 8x8 handwritten digits, real and offline) is the default. CIFAR-10 and any
ImageFolder dataset go through torchvision (not installed by default: `pip install torchvision` matching your torch),
with torchvision's ResNet-18; everything downstream is the same code. Images are float tensors (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from redlat.errors import ConfigError

DATASETS = ("digits", "cifar10", "imagefolder")
MODELS = ("small-cnn", "resnet18")
# The modules a latent defence may perturb, per model (the first is the input-side end of the network).
LATENT_LAYERS = {"small-cnn": ("block1", "block2", "block3"), "resnet18": ("layer1", "layer2", "layer3", "layer4")}


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    from sklearn.model_selection import train_test_split

    index = torch.arange(len(y)).numpy()
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y.numpy())
    return x[train], y[train], x[test], y[test]


def load_images(
    dataset: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> ImageData:
    if dataset == "digits":
        from sklearn.datasets import load_digits

        raw = load_digits()
        x = torch.tensor(raw.images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(raw.target, dtype=torch.long)
        return ImageData("digits", *_split(x, y, test_fraction, seed), classes=10)
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    vision = _torchvision()
    if data_dir is None:
        raise ConfigError(f"the {dataset} dataset needs data_dir (a folder holding it)")
    root = Path(data_dir).expanduser()
    steps = [vision.transforms.Resize((image_size, image_size))] if image_size else []
    transform = vision.transforms.Compose([*steps, vision.transforms.ToTensor()])
    if dataset == "cifar10":
        try:
            train = vision.datasets.CIFAR10(str(root), train=True, transform=transform, download=False)
            test = vision.datasets.CIFAR10(str(root), train=False, transform=transform, download=False)
        except RuntimeError as exc:
            raise ConfigError(f"CIFAR-10 not found in {root} ({exc}); download it there first") from None
        (tx, ty), (vx, vy) = _stack(train), _stack(test)
        return ImageData("cifar10", tx, ty, vx, vy, classes=10)
    if not root.is_dir():
        raise ConfigError(f"image folder {root} does not exist (expected one subfolder per class)")
    folder = vision.datasets.ImageFolder(str(root), transform=transform)
    if len(folder) == 0:
        raise ConfigError(f"image folder {root} holds no images")
    x, y = _stack(folder)
    return ImageData(f"imagefolder:{root.name}", *_split(x, y, test_fraction, seed), classes=len(folder.classes))


def _stack(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise ConfigError(
            "CIFAR-10, image folders and ResNet need torchvision: pip install torchvision (the build matching your "
            "torch); the offline default, digits with small-cnn, needs nothing more"
        ) from None
    return torchvision


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head; blocks are named so a defence can perturb their outputs."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block3(self.block2(self.block1(x))))  # (N, C, H, W) -> (N, classes)


def build_model(name: str, data: ImageData, *, width: int = 16) -> nn.Module:
    channels = data.shape[0]
    if name == "small-cnn":
        return SmallCNN(channels, data.classes, width)
    if name == "resnet18":
        model = _torchvision().models.resnet18(num_classes=data.classes)
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return model  # type: ignore[no-any-return]
    raise ConfigError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
