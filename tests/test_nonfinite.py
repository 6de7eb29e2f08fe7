"""NaN and Inf never pass silently in training (exodus_lightning.nonfinite): a plain Trainer raises
in the step where the value appears, naming the step and the layers it reached; ``skip`` leaves the
weights exactly as training without that batch; the native LIF scan's flag (CPU and the CUDA driver
through its emulation) agrees with a brute-force test of the input and changes nothing else."""

from __future__ import annotations

import math
import os

import lightning.pytorch as pl
import pytest
import torch

from exodus_lightning import _native
from exodus_lightning.nonfinite import NonFiniteError
from exodus_lightning.neuron_parameters import LIFParameters


def _data(bad_batch=None, value=math.nan, n_batches=4, batch_size=4, features=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_batches * batch_size, 20, features, generator=g) < 0.3).float()
    y = torch.randint(0, 3, (n_batches * batch_size,), generator=g)
    if bad_batch is not None:
        x[bad_batch * batch_size + 1, 7, 3] = value
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", **kwargs)


def _classifier(**kwargs):
    from exodus_lightning.models import SpikingClassifier
    from exodus_lightning.nn import LIF, LeakyIntegrator

    torch.manual_seed(0)
    return SpikingClassifier("10-16l-16l-3l", num_classes=3, neuron=LIF(5.0), readout=LeakyIntegrator(10.0),
                             **kwargs)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_plain_trainer_raises_on_a_bad_batch_naming_the_layer_and_step(value):
    model = _classifier()
    with pytest.raises(NonFiniteError) as error:
        _trainer().fit(model, _data(bad_batch=2, value=value))
    message = str(error.value)
    assert "training step 2 (epoch 0, batch 2)" in message, message
    assert "the batch" in message
    assert "the input of layer 'hidden layer 1: 16l (LIF)' (module network.1)" in message, message
    assert "nonfinite='skip'" in message
    # raised before the optimizer step: the weights are the finite ones of step 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_value_that_appears_inside_the_network_is_named_at_its_layer():
    class PoisonSecondLayer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:
                with torch.no_grad():
                    pl_module.network[2].weight[0, 0] = math.inf

    model = _classifier()
    with pytest.raises(NonFiniteError) as error:
        _trainer(callbacks=[PoisonSecondLayer()]).fit(model, _data())
    message = str(error.value)
    assert "training step 1 (epoch 0, batch 1)" in message, message
    seen = message.split("seen in ")[1]
    assert seen.startswith("the input of layer 'hidden layer 2: 16l (LIF)' (module network.3)"), message
    assert "the batch" not in message and "hidden layer 1" not in message


def test_skip_leaves_the_weights_as_training_without_the_batch():
    model = _classifier(nonfinite="skip")
    with pytest.warns(RuntimeWarning, match=r"training step 1 \(epoch 0, batch 1\).*the step is skipped"):
        _trainer().fit(model, _data(bad_batch=1, n_batches=3))
    loader = _data(n_batches=3)
    without = torch.utils.data.Subset(loader.dataset, [0, 1, 2, 3, 8, 9, 10, 11])  # batches 0 and 2
    good = torch.utils.data.DataLoader(without, batch_size=4)
    reference = _classifier(nonfinite="off")
    _trainer().fit(reference, good)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), name


def test_off_lets_the_value_through():
    model = _classifier(nonfinite="off")
    _trainer().fit(model, _data(bad_batch=1, n_batches=2))
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def _sparse():
    from exodus_lightning.algorithms.sparse_sgd import SparseSNN
    from exodus_lightning.models import SpikingClassifier

    torch.manual_seed(0)
    return SpikingClassifier(SparseSNN(10, 3, hidden=[16], init="normal"), num_classes=3)


def _event():
    from exodus_lightning.algorithms.event_driven import EventDrivenSNN
    from exodus_lightning.models import SpikingClassifier

    torch.manual_seed(0)
    return SpikingClassifier(EventDrivenSNN("10-16l-3l", calibrate_spikes=2.0), num_classes=3, loss="spike_count")


def _online():
    from exodus_lightning.models import OnlineSpikingClassifier

    torch.manual_seed(0)
    return OnlineSpikingClassifier("10-16l-3l", num_classes=3)


@pytest.mark.parametrize("build,layer", [(_sparse, "layers.0 (SparseLinearLIF)"), (_event, "layers.0 (EventLinear)"),
                                         (_online, "1 (OnlineLIF)")], ids=["sparse", "event", "ottt"])
def test_every_algorithm_raises_naming_its_first_layer(build, layer):
    model = build()
    with pytest.raises(NonFiniteError) as error:
        _trainer().fit(model, _data(bad_batch=1))
    message = str(error.value)
    assert "(epoch 0, batch 1)" in message and f"the input of layer '{layer}'" in message, message


def test_the_policy_is_a_cli_argument(tmp_path):
    from exodus_lightning.lightning_cli import ExodusCLI

    config = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")
    cli = ExodusCLI(args=["-c", config, "--model.init_args.nonfinite", "skip", "--trainer.logger=false",
                          f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert cli.model.nonfinite == "skip" and cli.model.hparams.nonfinite == "skip"
    with pytest.raises(ValueError, match="nonfinite must be one of 'raise', 'skip', 'off', got 'warn'"):
        _classifier(nonfinite="warn")


# ------------------------------------------------------------------ the native flag


def _forward_args(dtype, synapse, max_spikes, x):
    N = x.shape[2]
    alpha = torch.full((N,), 0.8, dtype=dtype)
    theta = torch.full((1,), 0.9, dtype=dtype)
    beta = torch.tensor([0.6], dtype=dtype) if synapse else None
    return (x, alpha, theta, beta, None, None, 0, max_spikes, None, False, False)


@pytest.mark.parametrize("library", ["cpu", "cuda driver (emulated)"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("synapse,max_spikes", [(False, 1), (True, 0)])
def test_native_flag_equals_a_brute_force_test_and_changes_nothing_else(library, dtype, synapse, max_spikes,
                                                                        monkeypatch):
    import exodus_lightning.ops  # noqa: F401  (registers the ops)

    if library != "cpu":
        emulation = _native.emulation()
        monkeypatch.setattr(_native, "for_device", lambda device_type: emulation)
    g = torch.Generator().manual_seed(3)
    B, T, N = 3, 17, 300  # N > one CPU block of 256 neurons: several blocks write the flag
    for value, where in [(None, None), (math.nan, (2, 16, 299)), (math.inf, (0, 0, 0)), (-math.inf, (1, 8, 260))]:
        x = torch.rand(B, T, N, generator=g, dtype=dtype) * 2
        if value is not None:
            x[where] = value
        args = _forward_args(dtype, synapse, max_spikes, x)
        checked = torch.ops.exodus.lif_forward(*args, True)
        plain = torch.ops.exodus.lif_forward(*args, False)
        assert checked[5].dtype == torch.int32 and checked[5].shape == (1,) and plain[5].numel() == 0
        assert checked[5].item() == int(not torch.isfinite(x).all())
        for a, b in zip(checked[:4], plain[:4]):
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


@pytest.mark.parametrize("backend", ["exodus", "slayer", "bptt"])
def test_set_check_finite_raises_in_the_call_for_every_backend(backend):
    import exodus_lightning as el
    from exodus_lightning.functional import leaky_integrator, lif

    x = torch.rand(2, 5, 3)
    x[1, 4, 2] = math.inf
    el.set_check_finite(True)
    try:
        with pytest.raises(ValueError, match="x contains NaN or Inf"):
            lif(x, LIFParameters(tau_mem=5.0), backend=backend)
        with pytest.raises(ValueError, match="x contains NaN or Inf"):
            leaky_integrator(x, 5.0, backend=backend)
        lif(torch.rand(2, 5, 3), LIFParameters(tau_mem=5.0), backend=backend)
    finally:
        el.set_check_finite(False)
    lif(x, LIFParameters(tau_mem=5.0), backend=backend)  # off: no check
