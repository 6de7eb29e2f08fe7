"""NeuroBench's own Benchmark on our models (issue 28.1), its figures checked against hand counts: a
2-layer network on a known spike input (synaptic operations = input spikes x fan-out, activation
sparsity = the zero fraction of the spiking layers' outputs), and the fused layers of the sparse-SGD and
event-driven networks counted like ``nn.Linear``. Skipped, naming it, without NeuroBench."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

neurobench = pytest.importorskip("neurobench", reason="neurobench is not installed (pip install --no-deps "
                                                       "neurobench numba llvmlite snntorch)")

from exodus_lightning.models import SpikingClassifier  # noqa: E402
from exodus_lightning.nn import IF, LeakyIntegrator, build_network  # noqa: E402
from exodus_lightning.neurobench import neurobench_metrics  # noqa: E402


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
    lengths = torch.full((len(y),), x.shape[1])
    return DataLoader(TensorDataset(x, y, lengths), batch_size=batch_size)


def _hand_counts(net: nn.Sequential, x: torch.Tensor) -> tuple[int, int, int, int]:
    """(synaptic ops on spikes, dense synaptic ops, spikes, neuron-steps) by running the layers one by one:
    a weight layer receiving spikes does one accumulation per input spike per non-zero weight it has."""
    ops = dense = spikes = steps = 0
    h = x
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                ops += int(((h != 0).double() @ (layer.weight != 0).double().T).sum())
                dense += h[..., 0].numel() * layer.in_features * layer.out_features
            h = layer(h)
            if isinstance(layer, IF):
                spikes += int((h != 0).sum())
                steps += h.numel()
    return ops, dense, spikes, steps


def test_two_layer_network_matches_hand_counts() -> None:
    torch.manual_seed(0)
    B, T = 6, 12
    net = build_network("8-5l-3l", neuron=IF(threshold=0.5), readout=LeakyIntegrator(4.0))
    with torch.no_grad():
        net[0].weight.copy_(torch.rand(5, 8))  # positive weights: the hidden layer fires
        net[2].weight[0, 0] = 0.0  # one connection pruned
    task = SpikingClassifier(net, num_classes=3, loss="sum_over_time_cross_entropy")
    x = (torch.rand(B, T, 8) < 0.3).float()
    y = torch.randint(0, 3, (B,))
    results = neurobench_metrics(task, _loader(x, y, batch_size=4))

    ops, dense, spikes, steps = _hand_counts(net, x)
    assert spikes > 0
    assert results["SynapticOperations"]["Effective_ACs"] == pytest.approx(ops / B)
    assert results["SynapticOperations"]["Effective_MACs"] == 0
    assert results["SynapticOperations"]["Dense"] == pytest.approx(dense / B)
    assert results["ActivationSparsity"] == pytest.approx(1 - spikes / steps)
    assert results["ParameterCount"] == 8 * 5 + 5 * 3
    assert results["Footprint"] == sum(p.numel() * 4 for p in net.parameters()) + sum(b.numel() * b.element_size()
                                                                                      for b in net.buffers())
    assert results["ConnectionSparsity"] == pytest.approx(1 / (8 * 5 + 5 * 3), abs=5e-5)  # reported to 4 decimals
    expected_accuracy = (task.predictions(task(x), None).argmax(-1) == y).float().mean().item()
    assert results["ClassificationAccuracy"] == pytest.approx(expected_accuracy)


def _out_features(layer: nn.Module) -> int:
    w = layer.weight() if callable(layer.weight) else layer.weight
    return w.shape[0]


@pytest.mark.parametrize("algorithm", ["sparse_sgd", "event_driven"])
def test_fused_layers_count_like_linear_layers(algorithm: str) -> None:
    """SparseSNN's SparseLinearLIF and DelayedLeakyReadout and the event-driven EventLinear hold their
    weights themselves: NeuroBench counts their synapses like a Linear's (one accumulation per input
    spike per output neuron; inputs and spikes recorded here by hooks on the layers' classes)."""
    from exodus_lightning.algorithms.event_driven import EventDrivenSNN, EventLinear
    from exodus_lightning.algorithms.sparse_sgd import DelayedLeakyReadout, SparseLinearLIF, SparseSNN

    torch.manual_seed(1)
    B, T = 4, 20
    x = (torch.rand(B, T, 10) < 0.4).float()
    y = torch.randint(0, 3, (B,))
    if algorithm == "sparse_sgd":
        net, weighted, spiking = SparseSNN(10, 3, hidden=(16,), init="normal"), (SparseLinearLIF, DelayedLeakyReadout), (SparseLinearLIF,)
    else:
        net, weighted, spiking = EventDrivenSNN("10-16l-3l", init_gain=4.0), (EventLinear,), (EventLinear,)
    ops, spikes, total = [0], [0], [0]

    def count_inputs(m, inputs):
        ops[0] += int((inputs[0] != 0).sum()) * _out_features(m)

    def count_spikes(m, inputs, output):
        spikes[0] += int((output != 0).sum())
        total[0] += output.numel()

    task = SpikingClassifier(net, num_classes=3, loss="sum_over_time_cross_entropy").eval()
    handles = [m.register_forward_pre_hook(count_inputs) for m in net.modules() if isinstance(m, weighted)]
    handles += [m.register_forward_hook(count_spikes) for m in net.modules() if isinstance(m, spiking)]
    with torch.no_grad():
        task(x)
    for h in handles:
        h.remove()
    assert ops[0] > 0 and spikes[0] > 0

    results = neurobench_metrics(task, _loader(x, y, batch_size=B))
    assert results["SynapticOperations"]["Effective_ACs"] == pytest.approx(ops[0] / B)
    assert results["SynapticOperations"]["Effective_MACs"] == 0
    assert results["ActivationSparsity"] == pytest.approx(1 - spikes[0] / total[0])
    assert results["ParameterCount"] == sum(p.numel() for p in net.parameters())


def test_test_command_logs_neurobench_figures(tmp_path) -> None:
    """``exodus-lightning test`` with the callback on the command line: the figures reach the logger."""
    import csv
    import os
    from pathlib import Path

    from exodus_lightning.lightning_cli import ExodusCLI
    from exodus_lightning.neurobench import NeuroBenchMetrics

    root = Path(__file__).resolve().parents[1]
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = ExodusCLI(args=[
            "test", "-c", str(root / "configs" / "quickstart.yaml"),
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path),
            "--trainer.enable_progress_bar=false", "--trainer.limit_test_batches", "2",
            "--trainer.callbacks+=exodus_lightning.neurobench.NeuroBenchMetrics",
        ])
    finally:
        os.chdir(old)
    cb = next(c for c in cli.trainer.callbacks if isinstance(c, NeuroBenchMetrics))
    for key in ("neurobench/Footprint", "neurobench/ParameterCount", "neurobench/ConnectionSparsity",
                "neurobench/ActivationSparsity", "neurobench/SynapticOperations/Effective_ACs",
                "neurobench/SynapticOperations/Dense", "neurobench/ClassificationAccuracy"):
        assert key in cb.results, key
    assert cb.results["neurobench/ParameterCount"] == sum(p.numel() for p in cli.model.network.parameters())
    assert 0 < cb.results["neurobench/ActivationSparsity"] < 1
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k: float(v) for r in rows for k, v in r.items() if k.startswith("neurobench/") and v}
    assert logged == pytest.approx(cb.results, rel=1e-6)
