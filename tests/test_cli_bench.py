"""The benchmark command runs and prints its ratios (it is a command, not a timed test: nothing here
asserts a speed)."""

from __future__ import annotations

import re

import pytest
import torch

from exodus_lightning import _native
from exodus_lightning.bench.lif import copy_bandwidth, saved_bytes
from exodus_lightning.bench.sparse import paired_speedup
from exodus_lightning.cli import main
from exodus_lightning.functional import lif
from exodus_lightning.ops import sparse as ops
from exodus_lightning.neuron_parameters import LIFParameters


def test_bench_lif_prints_ratios_for_every_backend(capsys):
    assert main(["bench", "lif", "--shape", "2,20,16", "--repeats", "1", "--bptt-repeats", "1"]) == 0
    out = capsys.readouterr().out
    for backend in ("exodus", "slayer", "bptt", r"exodus\+check"):
        assert re.search(rf"\(2, 20, 16\)\s+{backend}\s+\d", out), out
    assert re.search(r"speed-up of exodus: [\d.]+x over bptt", out)
    assert re.search(r"the NaN/Inf check costs x[\d.]+", out), out
    assert re.search(r"exodus / floor = [\d.]+", out)


def test_saved_bytes_counts_what_autograd_keeps():
    x = torch.rand(3, 10, 4, requires_grad=True)
    one_tensor = 3 * 10 * 4 * 4
    # exodus keeps the pre-reset membrane v (one B*T*N tensor) and the (1,)-sized parameters
    assert one_tensor <= saved_bytes(lambda: lif(x, LIFParameters(tau_mem=5.0))) <= one_tensor + 64
    # x * x saves x twice, but it is one storage
    assert saved_bytes(lambda: x * x) == one_tensor


def test_copy_bandwidth_is_bytes_per_second():
    """Read + write bytes over the median time of a copy, so between what any machine's memory
    does (0.1 GB/s) and none does (10 TB/s): catches a unit slip of 1e3 or 1e9."""
    assert 1e8 < copy_bandwidth(torch.device("cpu"), n_bytes=16 << 20, repeats=3) < 1e13


def test_cli_rejects_unknown_command(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert main(["bench", "nothing"]) == 2
    assert "unknown benchmark 'nothing'" in capsys.readouterr().err


def test_bench_sparse_prints_a_row_per_size_and_activity(capsys):
    assert main(["bench", "sparse", "--batch", "2", "--steps", "12", "--hidden", "40", "--activity", "0.05", "0.5",
                 "--repeats", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("40 ")]
    assert len(rows) == 2, rows
    for row in rows:
        assert row[4].endswith("x") and float(row[4][:-1]) > 0  # speed-up
        assert row[-2].endswith("%")  # memory saved
        assert row[-1] == ops.library().available_isas()[-1]  # the kernels' copy: the best by default


def test_bench_sparse_times_each_requested_kernel_copy_and_refuses_a_missing_one(capsys):
    available = ops.library().available_isas()
    assert main(["bench", "sparse", "--batch", "2", "--steps", "8", "--hidden", "24", "--activity", "0.1",
                 "--repeats", "1", "--isa", *available]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("24 ")]
    assert [row[-1] for row in rows] == available
    assert ops.library().isa() == available[-1]  # restored
    missing = [isa for isa in _native.ISAS if isa not in available]
    if missing:
        with pytest.raises(SystemExit):
            main(["bench", "sparse", "--isa", missing[0]])
        assert f"--isa {missing[0]}: not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "sparse", "--isa", "neon"])
    assert "invalid choice: 'neon'" in capsys.readouterr().err


def test_paired_speedup_is_the_median_of_same_round_ratios():
    # a slow round (the machine busy) raises both times of that round; its ratio stays in line
    assert paired_speedup([100.0, 300.0, 110.0], [10.0, 30.0, 11.0]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="equal length"):
        paired_speedup([1.0], [1.0, 2.0])


def test_step_profile_puts_each_op_in_its_category():
    """The breakdown's categories (bench layer --breakdown, bench step) attribute a step made only of
    matrix products to the GEMMs and one made only of LIF scans to the LIF rows."""
    from exodus_lightning.bench.breakdown import profile_steps

    a = torch.rand(256, 256)
    gemm = profile_steps(lambda: torch.mm(a, a), 5)
    assert float(re.search(r"GEMMs.*?([\d.]+)%", gemm[0]).group(1)) > 80, gemm
    x = torch.rand(4, 200, 300, requires_grad=True)
    scan = profile_steps(lambda: lif(x, LIFParameters(tau_mem=10.0)).sum().backward(), 3)
    shares = {line.split("(")[0].strip(): float(re.search(r"([\d.]+)%", line).group(1)) for line in scan[:-1]}
    assert shares["LIF forward"] > 0 and shares["LIF backward"] > 0 and shares["GEMMs"] == 0
    assert sum(shares.values()) == pytest.approx(100, abs=0.5)
    assert re.match(r"  page faults per step: \d+", scan[-1])


@pytest.mark.slow
def test_bench_step_breaks_down_the_quickstart_step(capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    assert main(["bench", "step", "--config", str(config), "--steps", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training step of quickstart.yaml: [\d.]+ ms per step .* batch 64: [\d,]+ samples/s", out), out
    for row in ("GEMMs", "LIF forward", "LIF backward", "leaky readout", "allocation", "optimiser kernels", "other ops"):
        assert re.search(rf"  {row}.*\s[\d.]+ ms\s+[\d.]+%", out), (row, out)
    assert float(re.search(r"LIF backward \(exodus::lif_backward\)\s+([\d.]+) ms", out).group(1)) > 0
