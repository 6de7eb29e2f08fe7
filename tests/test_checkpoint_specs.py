"""Checkpoints store what builds the network as configuration (class path + arguments), so
``Model.load_from_checkpoint(path)`` in a fresh process, with PyTorch's default ``weights_only``
loading and no extra arguments, rebuilds every kind of model (issue 23, item 5)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from exodus_lightning.spec import UndescribableError, describe, instantiate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "checkpoint_roundtrip.py"
CASES = ["string_templates", "module_conv", "module_built", "sparse", "event", "ottt_module", "ottt_string",
         "regressor"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    """Every case saved by one process and loaded by another (fresh) one."""
    root = tmp_path_factory.mktemp("roundtrip")
    for mode in ("save", "load"):
        done = _run(mode, str(root))
        assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.mark.parametrize("case", CASES)
def test_load_from_checkpoint_in_a_fresh_process_needs_no_arguments(case, roundtrip):
    folder = roundtrip / case
    for mode in ("save", "load"):
        error = folder / f"{mode}.error"
        assert not error.exists(), error.read_text()[-3000:]
    # PyTorch's default loading (weights_only=True) reads the file: no pickled module in it
    checkpoint = torch.load(folder / "model.ckpt")
    assert "network" in checkpoint["hyper_parameters"]
    # the reference is the trained model's own output in the process that built it
    assert torch.equal(torch.load(folder / "save.pt"), torch.load(folder / "load.pt"))


def test_specs_of_torch_layers_rebuild_the_same_layer():
    layers = [nn.Linear(3, 5, bias=False), nn.Conv2d(2, 4, (3, 5), stride=2, padding=1, padding_mode="reflect"),
              nn.Dropout(0.25), nn.Flatten(2, 3), nn.BatchNorm1d(7, momentum=0.3, affine=False), nn.AvgPool2d(3, 2),
              nn.Sequential(nn.Linear(2, 3), nn.ReLU())]
    for layer in layers:
        spec = describe(layer)
        rebuilt = instantiate(spec)
        assert repr(rebuilt) == repr(layer)
        assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == \
               [(k, v.shape) for k, v in layer.state_dict().items()]


def test_specs_are_plain_data_for_weights_only_loading(tmp_path):
    from exodus_lightning.nn import LIF, LeakyIntegrator, build_network

    spec = describe({"network": build_network("4-3l-2l", neuron=LIF(5.0, train_tau=True, shape=(3,)),
                                              readout=LeakyIntegrator(4.0)),
                     "optimizer": functools.partial(torch.optim.SGD, lr=0.5, momentum=0.9)})
    torch.save(spec, tmp_path / "spec.pt")
    back = torch.load(tmp_path / "spec.pt", weights_only=True)
    net = instantiate(back["network"])
    assert [type(m).__name__ for m in net] == ["Linear", "LIF", "Linear", "LeakyIntegrator"]
    optimizer = instantiate(back["optimizer"])([nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def test_a_checkpoint_cannot_name_arbitrary_code():
    for bad in ["os.system", "subprocess.run", "exodus_lightning.spec.instantiate", "torch.load"]:
        with pytest.raises(ValueError, match="class_path"):
            instantiate({"class_path": bad, "init_args": {}})
    with pytest.raises(ValueError, match="has no argument 'nope'"):
        instantiate({"class_path": "exodus_lightning.nn.LIF", "init_args": {"nope": 1}})


def test_own_modules_without_recorded_arguments_are_named():
    class Mine(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.lin = nn.Linear(n, n)

    with pytest.raises(UndescribableError, match="Mine has no spec"):
        describe(Mine(3))
