"""Image data and classifiers for the vision experiments.

`digits` (scikit-learn's bundled 8x8 handwritten digits, real and offline) is the default. Any folder in
ImageFolder's layout is read with Pillow; CIFAR-10 and ResNet-18 come from torchvision (not installed by default:
`pip install torchvision` matching your torch). Everything downstream is the same code.
Images are float tensors (N, C, H, W) in [0, 1].
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
    if data_dir is None:
        raise ConfigError(f"the {dataset} dataset needs data_dir (a folder holding it)")
    root = Path(data_dir).expanduser()
    if dataset == "imagefolder":
        x, y, classes = read_image_folder(root, image_size)
        return ImageData(f"imagefolder:{root.name}", *_split(x, y, test_fraction, seed), classes=len(classes))
    vision = _torchvision()
    steps = [vision.transforms.Resize((image_size, image_size))] if image_size else []
    transform = vision.transforms.Compose([*steps, vision.transforms.ToTensor()])
    try:
        train = vision.datasets.CIFAR10(str(root), train=True, transform=transform, download=False)
        test = vision.datasets.CIFAR10(str(root), train=False, transform=transform, download=False)
    except RuntimeError as exc:
        raise ConfigError(f"CIFAR-10 not found in {root} ({exc}); download it there first") from None
    (tx, ty), (vx, vy) = _stack(train), _stack(test)
    return ImageData("cifar10", tx, ty, vx, vy, classes=10)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image_folder(root: Path, image_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """ImageFolder's layout (one subfolder per class, sorted names = class indices), read with Pillow as RGB.

    Read here rather than through torchvision so that folders work wherever torch does (torchvision has no CPU
    build for every torch); images must share a size unless `image_size` resizes them to a square."""
    from PIL import Image

    if not root.is_dir():
        raise ConfigError(f"image folder {root} does not exist (expected one subfolder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                if image_size:
                    rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
                data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
                images.append(data.reshape(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255.0)
            labels.append(index)
    if not images:
        raise ConfigError(f"image folder {root} holds no images (one subfolder per class, {', '.join(IMAGE_SUFFIXES)})")
    sizes = {tuple(img.shape) for img in images}
    if len(sizes) > 1:
        raise ConfigError(f"images in {root} differ in size ({len(sizes)} sizes): set image_size to resize them")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), classes


def _stack(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise ConfigError(
            "CIFAR-10 and ResNet need torchvision: pip install torchvision (the build matching your "
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
