"""The sparse-SGD configs build their model and DataModule (no data, no training)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _build(spec):
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        kwargs = {k: _build(v) for k, v in (spec.get("init_args") or {}).items() if k != "optimizer"}
        return cls(**kwargs)
    return spec


@pytest.mark.parametrize("name", ["sparse_quick.yaml", "sparse_shd.yaml"])
def test_config_builds(name, tmp_path):
    cfg = yaml.safe_load((CONFIGS / name).read_text())
    model = _build(cfg["model"])
    net = model.network
    assert net.layers[0].backend == "sparse" and net.layers[0].b_th == 0.2
    data_spec = cfg["data"]
    if "SHD" in data_spec["class_path"]:
        data_spec["init_args"]["data_dir"] = str(tmp_path)
        assert net.layers[0].dt == 2.0 and [l.out_features for l in net.layers] == [200, 200]
        assert data_spec["init_args"]["n_time_bins"] == 500
        assert net.strengths == (0.06, 10.0, 100.0, 0.001)
    dm = _build(data_spec)
    assert dm is not None
    x = (torch.rand(2, 20, net.layers[0].in_features) < 0.05).float()
    assert model(x).shape == (2, 20, model.num_classes)
