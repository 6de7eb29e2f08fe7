"""The README's "The core, from Python" block runs as written (on a smaller input) and its claims
hold: streaming in two chunks gives the spikes of one call, checked against a float64 loop."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.reference import lif_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def _core_block() -> str:
    text = README.read_text()
    section = text[text.index("## The core, from Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python block under 'The core, from Python'"
    return match.group(1)


def test_the_core_block_runs_and_streaming_equals_one_call():
    code = _core_block().replace("torch.rand(32, 500, 256, requires_grad=True)",
                                 "torch.rand(4, 500, 8, generator=torch.Generator().manual_seed(0), "
                                 "dtype=torch.float64, requires_grad=True)")
    assert "torch.rand(4, 500, 8" in code, "the README's input line changed: update this test"
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    x = scope["x"].detach()
    streamed = torch.cat([scope["spikes"], scope["spikes2"]], 1)
    reference, *_ = lif_reference(x, 20.0, 1.0, tau_syn=5.0)
    assert torch.equal(streamed, reference)
    assert 0 < reference.sum() < reference.numel()
    spikes, readout = scope["spikes"], scope["readout"]  # readout of the first chunk's spikes
    v, alpha = torch.zeros_like(spikes[:, 0]), torch.exp(torch.tensor(-1.0 / 10.0, dtype=torch.float64))
    for t in range(spikes.shape[1]):  # v[t] = alpha v[t-1] + s[t]
        v = alpha * v + spikes[:, t]
        assert torch.allclose(readout[:, t], v, rtol=1e-12, atol=1e-12)
