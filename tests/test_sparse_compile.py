"""The sparse ops as custom ops (issue 24, item 4): ``torch.compile(fullgraph=True)`` of SparseSNN and of
EventDrivenSNN equals eager, every ``exodus_sparse`` op passes ``torch.library.opcheck`` (schema, fake
tensor, autograd registration, AOT dispatch), and the input-gradient path the native library plans is
the one its cost model names, both paths giving the same gradients."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning.algorithms import sparse_sgd as S
from exodus_lightning.algorithms.event_driven import EventDrivenSNN
from exodus_lightning.ops import sparse as ops

D = torch.float64
BETA = 100.0


def _step(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output and every parameter gradient of one forward + backward of a fixed linear loss."""
    model.zero_grad()
    out = model(x)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weight).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_compiled_equals_eager(model: torch.nn.Module, xs: list[torch.Tensor], backend: str) -> None:
    """The compiled graph calls the same native kernels on the same operands; the torch ops around
    them (weight products, readout, regulariser, weight normalisation) run in float64 on tiny sizes.
    With aot_eager they are the eager kernels: equal bit for bit.  Inductor generates its own C++ for
    the elementwise ops and may fuse or reorder them: equal to float64 rounding (1e-12 relative on
    values of order one, some hundred ulps)."""
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for x in xs:  # a second batch: other active-set sizes, the same graph (unbacked sizes, no recompile)
        want_out, want_grads = _step(model, x)
        got_out, got_grads = _step(compiled, x)
        assert len(got_grads) == len(want_grads)
        for got, want in zip([got_out] + got_grads, [want_out] + want_grads):
            if backend == "aot_eager":
                assert torch.equal(got, want)
            else:
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        weights = [g for (name, _), g in zip(model.named_parameters(), want_grads) if "weight" in name]
        assert all(g.abs().sum() > 0 for g in weights), "the case must exercise every layer's weight gradient"


def _inputs(n_inputs: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(2, 20, n_inputs, generator=g) < p).to(D) for p in (0.4, 0.5)]


@pytest.mark.slow
def test_compiled_sparse_snn_equals_eager_inductor():
    """The default backend (inductor, C++ on the CPU): forward and backward of the whole network in one
    graph, the regularisers on (training mode)."""
    torch.manual_seed(0)
    model = S.SparseSNN(8, 3, hidden=(12, 10), b_th=0.5).double()
    _assert_compiled_equals_eager(model, _inputs(8, 0), "inductor")
    assert model.last_regularization is not None and len(model.last_activity) == 2


@pytest.mark.parametrize("backend", ["sparse", "dense"])
@pytest.mark.parametrize("gradient", ["detached", "exact"])
def test_compiled_sparse_snn_equals_eager(backend, gradient):
    """fullgraph capture and AOT autograd (fake implementations, unbacked active-set sizes, the
    registered autograd formula) for both backends and gradients; aot_eager skips inductor's C++
    compile, which the slow test above covers."""
    torch.manual_seed(0)
    model = S.SparseSNN(8, 3, hidden=(12, 10), b_th=0.5, backend=backend, gradient=gradient).double()
    _assert_compiled_equals_eager(model, _inputs(8, 0), "aot_eager")


def test_compiled_event_driven_snn_equals_eager():
    torch.manual_seed(2)
    model = EventDrivenSNN("8-12l-3l", init_gain=8.0).double()  # a gain at which both layers spike
    _assert_compiled_equals_eager(model, _inputs(8, 2), "inductor")


def test_calibrated_event_driven_snn_compiles_and_loads_its_state():
    """The calibration (suppl. G, a bisection on measured spike counts) runs eagerly; once done, the
    calibrated network compiles fullgraph (forward reads a Python flag, not the buffer), and a
    network loading a calibrated state skips it too."""
    torch.manual_seed(2)
    model = EventDrivenSNN("8-12l-3l", calibrate_spikes=2.0).double()
    x = _inputs(8, 2)
    model(x[0])  # eager: calibrates
    assert bool(model.calibrated)
    _assert_compiled_equals_eager(model, x, "aot_eager")
    fresh = EventDrivenSNN("8-12l-3l", calibrate_spikes=2.0).double()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x[1]), model(x[1]))


# ----------------------------------------------------------------------------- opcheck


def _layer(seed: int = 3, B: int = 2, T: int = 12, N: int = 6, N_in: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, T, N_in, generator=g) < 0.4).to(D)
    w = torch.randn(N, N_in, generator=g, dtype=D)
    h = x @ w.t()
    spikes, v, counts = ops.lif_forward(h, 0.9, 1.0, 1.0, 0.5, BETA, True, True)
    act = ops.collect_active(v, counts, 1.0, 0.5, BETA)
    in_act = ops.active_set_from_mask(torch.rand(B, T, N_in, generator=g) < 0.3, None, D)
    return x, w, h, v, counts, act, in_act, torch.randn(B, T, N, generator=g, dtype=D)


def _opcheck(op, args) -> None:
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                                                "test_aot_dispatch_dynamic"))


def test_opcheck_forward_ops():
    x, w, h, v, counts, act, _, gs = _layer()
    assert act.count > 0
    _opcheck(torch.ops.exodus_sparse.lif_forward.default, (h, 0.9, 1.0, 1.0, 0.5, BETA, True, True))
    _opcheck(torch.ops.exodus_sparse.collect_active.default, (v, counts, 1.0, 0.5, BETA))
    _opcheck(torch.ops.exodus_sparse.input_trace.default, (x, 0.9, True))
    _opcheck(torch.ops.exodus_sparse.dense_backward.default, (v, gs, 0.9, 1.0, 1.0, 0.5, BETA, False, True))


@pytest.mark.parametrize("input_mode, input_path", [(0, "auto"), (1, "auto"), (2, "dots"), (2, "products")])
def test_opcheck_sparse_backward(input_mode, input_path):
    x, w, _, _, _, act, in_act, gs = _layer()
    trace = ops.input_trace(x, 0.9, True)
    sparse_input = input_mode == 2
    _opcheck(torch.ops.exodus_sparse.sparse_backward.default,
             (act.offsets, act.times, act.fvals, gs, 0.9, 1.0, True, True, trace, w, input_mode,
              in_act.offsets if sparse_input else None, in_act.times if sparse_input else None, input_path))


@pytest.mark.parametrize("backend", ["sparse", "dense"])
@pytest.mark.parametrize("sparse_input", [False, True])
def test_opcheck_sparse_linear_lif(backend, sparse_input):
    """The differentiable layer op: its registered backward is checked against AOT autograd's."""
    x, w, _, _, _, _, in_act, _ = _layer()
    _opcheck(torch.ops.exodus_sparse.sparse_linear_lif.default,
             (x.requires_grad_(), w.requires_grad_(), in_act.offsets if sparse_input else None,
              in_act.times if sparse_input else None, 0.9, 1.0, 1.0, 0.5, BETA, True, True, False, backend, True))


def test_layer_op_without_the_trace_refuses_the_weight_gradient():
    x, w, _, _, _, _, _, _ = _layer()
    w.requires_grad_()
    spikes = torch.ops.exodus_sparse.sparse_linear_lif(x, w, None, None, 0.9, 1.0, 1.0, 0.5, BETA, True, True, False,
                                                       "sparse", False)[0]
    with pytest.raises(RuntimeError, match="keep_trace=True"):
        spikes.sum().backward()


# ----------------------------------------------------------------------------- the planned path


def _brute_force_costs(B, T, N_out, N_in, out_active, in_active) -> tuple[float, float]:
    """The cost model of sparse_cpu.cpp written out (multiply-adds of the streamed rows and the
    per-element weights of the scans and the transpose): (by products, by dot products)."""
    return (out_active * N_in + 5 * B * T * N_in,
            in_active * N_out + 4 * B * T * N_out + 12 * N_out * N_in)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_planned_path_is_the_cost_models_and_both_paths_agree(dtype):
    """For several sizes and activities: the native plan's input_mode is the one the cost model says,
    "auto" gives the bits of that path, and the two paths give the same gradient (to float rounding:
    the sums over j run in different orders)."""
    lib = ops.library()
    g = torch.Generator().manual_seed(4)
    seen = set()
    for B, T, N, N_in, rho_out, rho_in in [(2, 30, 40, 33, 0.3, 0.3), (2, 30, 40, 33, 0.3, 0.01),
                                          (1, 8, 600, 600, 0.02, 0.02), (3, 10, 5, 700, 0.5, 0.05)]:
        v = 1 + 0.4 * torch.randn(B, T, N, generator=g, dtype=D)
        mask = torch.rand(B, T, N, generator=g) < rho_out
        act = ops.active_set_from_mask(mask, S.truncated_surrogate(v, 1.0, BETA, math.inf), dtype)
        in_act = ops.active_set_from_mask(torch.rand(B, T, N_in, generator=g) < rho_in, None, dtype)
        gs = torch.randn(B, T, N, generator=g, dtype=dtype)
        w = (torch.randn(N, N_in, generator=g, dtype=D) / N ** 0.5).to(dtype)
        by_products, by_dots = _brute_force_costs(B, T, N, N_in, act.count, in_act.count)
        plan = ops.backward_plan(lib, B, T, N, N_in, dtype, act.count, in_act.count)
        assert plan.input_mode == (3 if by_products <= by_dots else 2)
        assert ops.products_are_cheaper(B, T, N, N_in, act.count, in_act.count) == (plan.input_mode == 3)
        seen.add(plan.input_mode)
        outs = {p: ops.sparse_backward(act, gs, 0.9, 1.0, False, True, None, w, 2, in_act, input_path=p)
                for p in ("auto", "dots", "products")}
        chosen = "products" if plan.input_mode == 3 else "dots"
        assert torch.equal(outs["auto"]["grad_x"], outs[chosen]["grad_x"])
        assert int(outs["auto"]["workspace_bytes"]) == plan.workspace_bytes > 0
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(outs["products"]["grad_x"], outs["dots"]["grad_x"], **tol)
        assert outs["dots"]["grad_x"].abs().sum() > 0
    assert seen == {2, 3}, "the sizes must exercise both paths"


def test_plan_workspaces_and_errors():
    """The dot-product path's workspace (per-thread delta blocks and the transposed weight) is sized by
    the library; the CUDA drivers (here their host emulation) plan dot products and a zeroed grad_x
    whatever is asked; a bad request names the argument."""
    lib, emu = ops.library(), ops.emulation_library()
    plan = ops.backward_plan(lib, 4, 10, 6, 5, D, 20, 20, input_path="dots")
    threads = max(1, min(lib.max_threads(), 4))
    assert (plan.input_mode, plan.n_workspaces, plan.zero_grad_x) == (2, threads, 0)
    assert plan.workspace == threads * 10 * 6 + 6 * 5 and plan.workspace_bytes == 8 * plan.workspace
    assert ops.backward_plan(lib, 4, 10, 6, 5, D, 20, 20, input_path="products").input_mode == 3
    for path in ("auto", "products"):
        plan = ops.backward_plan(emu, 4, 10, 6, 5, torch.float32, 20, 20, needed=7, input_path=path)
        assert (plan.input_mode, plan.zero_grad_x, plan.powers, plan.delta_needed) == (2, 1, 11, 7 * 6)
    with pytest.raises(ValueError, match="input_path"):
        ops.backward_plan(lib, 1, 1, 1, 1, D, 0, 0, input_path="transpose")
    with pytest.raises(RuntimeError, match="out_active and in_active must be >= 0"):
        ops.backward_plan(lib, 1, 1, 1, 1, D, -1, 0)
    with pytest.raises(RuntimeError, match=r"backward_plan \(cuda emulation\): needed, out_active and in_active"):
        ops.backward_plan(emu, 1, 1, 1, 1, D, 0, 0, needed=-1)
    for library in (lib, emu):
        with pytest.raises(RuntimeError, match="negative size"):
            ops.backward_plan(library, 1, -1, 1, 1, D, 0, 0)
