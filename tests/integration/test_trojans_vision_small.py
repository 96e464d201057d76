"""The trojans-vision sweep on a tiny config: resume after an interruption stores exactly what one run stores;
user triggers plug in; LAT eps is relative to the layer; data sources fail clearly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from fakes import InterruptAfter
from redlat.adversarial.trojans import Trojan
from redlat.config import DefenceSpec, TrojansVisionConfig
from redlat.errors import ConfigError, RunDirMismatchError
from redlat.experiments.images import load_images
from redlat.experiments.pareto import summarize_experiment
from redlat.experiments.trojans_vision import make_defence, run_trojans_vision

TINY = {
    "seeds": [0],
    "base_epochs": 2,
    "attack_steps": 2,
    "eval_pgd_steps": 2,
    "width": 4,
    "defences": [{"kind": "none"}, {"kind": "at", "norm": "linf", "eps": 0.1}, {"kind": "lat", "layers": ["block2"],
                                                                              "eps": 0.25}],
    "eval_attacks": ["pgd-linf:0.1", "blur:1"],
    "device": "cpu",
}


def _results(run: Path) -> list[tuple]:
    with sqlite3.connect(run / "run.sqlite") as db:
        return db.execute("SELECT setting, seed, metric, value FROM results WHERE metric != 'train_seconds' "
                          "ORDER BY 1, 2, 3").fetchall()


def test_an_interrupted_sweep_resumes_to_the_same_results(tmp_path):
    cfg = TrojansVisionConfig.model_validate(TINY)
    run_trojans_vision(cfg, tmp_path / "whole").close()

    stop_after_two = InterruptAfter(2)
    said = stop_after_two.lines

    with pytest.raises(KeyboardInterrupt):
        run_trojans_vision(cfg, tmp_path / "parted", progress=stop_after_two)
    assert len({(r[0], r[1]) for r in _results(tmp_path / "parted")}) == 2  # poisoned and none were committed
    bars: list[dict] = []

    class Bar:
        def __init__(self, total: int, initial: int) -> None:
            self.state = {"total": total, "initial": initial, "updates": 0, "closed": False}
            bars.append(self.state)

        def update(self, n: int) -> None:
            self.state["updates"] += n

        def close(self) -> None:
            self.state["closed"] = True

    store = run_trojans_vision(cfg, tmp_path / "parted", progress=said.append, bar=Bar)
    assert bars == [{"total": 4, "initial": 2, "updates": 2, "closed": True}]  # the bar resumes where it stopped
    with store:
        summary = summarize_experiment(store)
        assert store.run_info().status == "complete"
    assert len(said) == 4  # the two missing settings, and nothing twice
    assert _results(tmp_path / "parted") == _results(tmp_path / "whole")
    assert [s["setting"] for s in summary["settings"]] == ["poisoned", "none", "at-linf-0.1", "lat-block2-l2-0.25x"]

    other = TrojansVisionConfig.model_validate({**TINY, "seeds": [1]})
    with pytest.raises(RunDirMismatchError):
        run_trojans_vision(other, tmp_path / "whole")


def test_a_users_trigger_plugs_in(tmp_path):
    def corner_dot(images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        out[..., 0, 0] = 1.0
        return out

    cfg = TrojansVisionConfig.model_validate({**TINY, "defences": [{"kind": "none"}]})
    store = run_trojans_vision(cfg, tmp_path / "run", trojans=[Trojan("dot", corner_dot, 3)])
    with store:
        metrics = {r["metric"] for r in store.results()}
    assert "asr:dot" in metrics and "asr:patch" not in metrics
    with pytest.raises(ConfigError, match="targets class 12"):
        run_trojans_vision(cfg, tmp_path / "bad", trojans=[Trojan("dot", corner_dot, 12)])
    wrong_layer = TrojansVisionConfig.model_validate({**TINY, "defences": [{"kind": "lat", "layers": ["layer2"],
                                                                            "eps": 0.1}]})
    with pytest.raises(ConfigError, match="no submodule 'layer2'"):
        run_trojans_vision(wrong_layer, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_lat_eps_is_relative_to_the_layers_activation_norm():
    from redlat.adversarial.pgd import typical_norm
    from redlat.experiments.images import SmallCNN

    data = load_images("digits")
    cfg = TrojansVisionConfig.model_validate(TINY)
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 4)
    defence = make_defence(DefenceSpec(kind="lat", layers=("block3",), eps=0.5), cfg, model, data)
    scale = typical_norm(model, "block3", lambda m: m(data.train_x[:512]))
    assert defence.layers == ("block3",) and defence.attack.eps == pytest.approx(0.5 * scale)
    absolute = make_defence(DefenceSpec(kind="lat", layers=("block3",), eps=0.5, relative_eps=False), cfg, model, data)
    assert absolute.attack.eps == 0.5


def test_data_sources_fail_clearly(tmp_path):
    digits = load_images("digits")
    assert digits.shape == (1, 8, 8) and len(digits.train_x) + len(digits.test_x) == 1797
    assert float(digits.train_x.min()) >= 0 and float(digits.train_x.max()) <= 1
    with pytest.raises(ConfigError, match="does not exist"):
        load_images("imagefolder", data_dir=str(tmp_path / "missing"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no images"):
        load_images("imagefolder", data_dir=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_images("cifar10")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install torchvision"):
            load_images("cifar10", data_dir=str(tmp_path))


def _write_folder(root: Path, sizes=((12, 12),)) -> None:
    """Two classes of small RGB images: horizontal or vertical stripes, with noise."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for label, name in enumerate(["left", "right"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            w, h = sizes[i % len(sizes)]
            img = torch.rand(h, w, 3, generator=gen) * 0.3
            if label == 0:
                img[::2, :] += 0.6
            else:
                img[:, ::2] += 0.6
            Image.fromarray((img.clamp(0, 1) * 255).byte().numpy()).save(root / name / f"{i}.png")


def test_an_image_folder_runs_the_same_sweep(tmp_path):
    _write_folder(tmp_path / "imgs")
    data = load_images("imagefolder", data_dir=str(tmp_path / "imgs"))
    assert data.shape == (3, 12, 12) and data.classes == 2 and len(data.train_x) + len(data.test_x) == 60
    cfg = TrojansVisionConfig.model_validate(
        {**TINY, "dataset": "imagefolder", "data_dir": str(tmp_path / "imgs"), "base_epochs": 20,
         "trojans": [{"name": "patch", "kind": "patch", "target": 1}], "poison_rate": 0.2}
    )
    store = run_trojans_vision(cfg, tmp_path / "run")
    with store:
        summary = summarize_experiment(store)
    assert [s["setting"] for s in summary["settings"]][:2] == ["poisoned", "none"]
    assert summary["settings"][0]["metrics"]["clean_acc"]["mean"] > 0.8  # the stripes are learnt

    _write_folder(tmp_path / "mixed", sizes=((12, 12), (10, 14)))
    with pytest.raises(ConfigError, match="set image_size"):
        load_images("imagefolder", data_dir=str(tmp_path / "mixed"))
    assert load_images("imagefolder", data_dir=str(tmp_path / "mixed"), image_size=8).shape == (3, 8, 8)
