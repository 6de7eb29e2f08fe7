"""What reaches the native kernels through the C ABIs (issue 22): tensors given with any strides
(transposed, sliced with a step, expanded with stride 0, with a storage offset) are read as the
values they hold, every pointer outlives the call, NULL pointers and overflowing sizes are
rejected with an error naming them, and empty tensors give empty results.  Each finding of the
issue has its test here; the property-based tests (test_ops_properties.py) cover the same ground
at random."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning.functional import leaky_integrator, lif_with_membrane
from tests.reference import leaky_reference, lif_reference, rel_err
from exodus_lightning.neuron_parameters import LIFParameters

D = torch.float64


def _churn() -> list[torch.Tensor]:
    # Fresh allocations of the freed copies' size, filled with garbage: a kernel reading freed
    # memory then reads these values instead of the state.
    return [torch.full((64, 64), 1e30, dtype=D) for _ in range(8)]


def _lif_and_grads(x, v0, i0, p):
    """Spikes, membrane, final state and the gradients of a random linear loss w.r.t. x, v0, i0."""
    leaves = [t.detach().requires_grad_() for t in (x, v0, i0)]
    s, v, state = lif_with_membrane(leaves[0], p, v0=leaves[1], i0=leaves[2])
    _churn()
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=D)).sum() for t in (s, v, state.v, state.i))
    return (s, v, state.v, state.i) + torch.autograd.grad(loss, leaves)


def _reference_and_grads(x, v0, i0, tau_mem, tau_syn, threshold=1.0):
    leaves = [t.detach().contiguous().requires_grad_() for t in (x, v0, i0)]
    s, v, v_fin, i_fin = lif_reference(leaves[0], tau_mem, threshold, tau_syn=tau_syn, v0=leaves[1], i0=leaves[2])
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=D)).sum() for t in (s, v, v_fin, i_fin))
    return (s, v, v_fin, i_fin) + torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("layout", ["transposed", "column_of_a_trace", "stride_0"])
def test_strided_initial_state_is_read_while_alive(layout):
    """Finding 1: v0/i0 not contiguous were copied by ``ptr(v0.contiguous())`` and the copy freed
    before the kernel read it (heap-use-after-free, values up to 1e46)."""
    g = torch.Generator().manual_seed(0)
    B, T, N = 4, 30, 40
    x = torch.rand(B, T, N, generator=g, dtype=D) * 0.5
    if layout == "transposed":
        v0, i0 = (torch.rand(N, B, generator=g, dtype=D).t() for _ in range(2))
    elif layout == "column_of_a_trace":  # v[:, -1] of an earlier call: a step of N, an offset
        v0, i0 = (torch.rand(B, 5, N, generator=g, dtype=D)[:, -1] for _ in range(2))
    else:
        v0, i0 = (torch.rand(1, N, generator=g, dtype=D).expand(B, N) for _ in range(2))
    assert not v0.is_contiguous() and not i0.is_contiguous()
    ref = _reference_and_grads(x, v0, i0, 10.0, 4.0)
    assert ref[0].sum() > 0
    for _ in range(3):  # the freed copies are reused by other allocations at random
        got = _lif_and_grads(x, v0, i0, LIFParameters(tau_mem=10.0, tau_syn=4.0))
        assert torch.equal(got[0], ref[0]), "spikes differ from the reference"
        for name, a, b in zip(("v", "v_final", "i_final", "dx", "dv0", "di0"), got[1:], ref[1:]):
            assert rel_err(a, b) <= 1e-12, name


@pytest.mark.parametrize("layout", ["step", "stride_0", "offset", "channels"])
def test_strided_per_neuron_parameters_are_read_as_their_values(layout):
    """Finding 2: ``neuron_parameter`` returned strided or stride-0 views of threshold/tau_mem/
    tau_syn, and the ops passed them as contiguous arrays of N values (wrong spikes and gradients,
    reads past the end)."""
    g = torch.Generator().manual_seed(2)
    B, T, N = 3, 40, 24
    x = torch.rand(B, T, N, generator=g, dtype=D) * 0.6
    if layout == "step":
        theta = torch.linspace(0.3, 1.5, 2 * N, dtype=D)[::2]
        tau = torch.linspace(3.0, 30.0, 3 * N, dtype=D)[::3]
        tau_syn = torch.linspace(2.0, 6.0, 2 * N, dtype=D)[1::2]
    elif layout == "stride_0":
        theta = torch.tensor(0.4, dtype=D).expand(N)
        tau = torch.tensor([7.0], dtype=D).expand(N)
        tau_syn = torch.tensor(3.0, dtype=D).expand(N)
    elif layout == "offset":
        theta = torch.linspace(0.3, 1.5, N + 5, dtype=D)[5:]
        tau = torch.linspace(3.0, 30.0, N + 1, dtype=D)[1:]
        tau_syn = torch.linspace(2.0, 6.0, N + 3, dtype=D)[3:]
    else:  # (C, 1, 1)-style values broadcast over (C, H, W), given transposed
        x = x.reshape(B, T, 2, 3, 4)
        theta = torch.linspace(0.3, 1.5, 24, dtype=D).reshape(4, 3, 2).permute(2, 1, 0)
        tau = torch.linspace(3.0, 30.0, 2, dtype=D).reshape(2, 1, 1).expand(2, 3, 4)
        tau_syn = torch.linspace(2.0, 6.0, 12, dtype=D).reshape(3, 4).t().t()[None].expand(2, 3, 4)
    tau = tau.clone().requires_grad_() if layout == "offset" else tau
    xr = x.detach().clone().requires_grad_()
    s_ref, v_ref, *_ = lif_reference(xr, tau, theta.contiguous(), tau_syn=tau_syn.contiguous())
    gs = torch.randn(s_ref.shape, generator=g, dtype=D)
    ref_grads = torch.autograd.grad((s_ref * gs).sum() + v_ref.sum(), [xr] + ([tau] if tau.requires_grad else []))
    xe = x.detach().clone().requires_grad_()
    s, v, _ = lif_with_membrane(xe, LIFParameters(tau_mem=tau, threshold=theta, tau_syn=tau_syn))
    grads = torch.autograd.grad((s * gs).sum() + v.sum(), [xe] + ([tau] if tau.requires_grad else []))
    assert 0 < s_ref.sum() < s_ref.numel()
    assert torch.equal(s, s_ref), "spikes differ from the reference"
    assert rel_err(v, v_ref) <= 1e-12
    for a, b in zip(grads, ref_grads):
        assert rel_err(a, b) <= 1e-10


def test_strided_leaky_decay_and_state():
    g = torch.Generator().manual_seed(3)
    B, T, N = 3, 20, 10
    x = torch.rand(T, B, N, generator=g, dtype=D).transpose(0, 1)
    tau = torch.linspace(2.0, 9.0, 2 * N, dtype=D)[::2]
    v0 = torch.rand(N, B, generator=g, dtype=D).t()
    out = leaky_integrator(x, tau, v0=v0, norm_input=True)
    _churn()
    assert rel_err(out, leaky_reference(x, tau.contiguous(), v0.contiguous(), norm_input=True)) <= 1e-12


def test_ops_reject_operands_the_kernels_would_read_past():
    """The registered ops take raw tensors (torch.ops.exodus.*): a parameter of neither 1 nor N
    values, a state of the wrong size or a parameter in another dtype is an error naming it, not a
    read past its end."""
    import exodus_lightning.ops  # noqa: F401  (registers the ops)

    x = torch.rand(2, 5, 4, dtype=D)
    one = torch.ones(1, dtype=D)
    lif = torch.ops.exodus.lif_forward
    with pytest.raises(ValueError, match=r"theta must have 1 or 4 elements"):
        lif(x, one, torch.ones(3, dtype=D), None, None, None, 0, 1, None, False, False)
    with pytest.raises(ValueError, match=r"beta must have 1 or 4 elements"):
        lif(x, one, one, torch.ones(8, dtype=D), None, None, 0, 1, None, False, False)
    with pytest.raises(ValueError, match=r"i0 must have 8 elements"):
        lif(x, one, one, one, None, torch.zeros(2, 3, dtype=D), 0, 1, None, False, False)
    with pytest.raises(TypeError, match=r"alpha must be torch.float64 for torch.float64 data, got torch.float32"):
        lif(x, torch.ones(1), one, None, None, None, 0, 1, None, False, False)
    with pytest.raises(ValueError, match=r"v0 must have 8 elements"):
        torch.ops.exodus.leaky_forward(x, one, torch.zeros(2, 5, dtype=D), False)
    with pytest.raises(ValueError, match=r"out must have 40 elements"):
        torch.ops.exodus.leaky_backward(x, one, None, x[:, :1], None, False, True)


# ------------------------------------------------------------------ sizes whose product overflows

BIG = 2**22  # B = T = N = 2^22: B T N = 2^66 wraps to 0 in int64


def _event_args(lib_module, name):
    struct = {"srm_forward": lib_module.SRMForwardArgs, "srm_backward": lib_module.SRMBackwardArgs}[name]
    return struct(B=BIG, T=BIG, N=BIG, dtype=1, decay_m=0.9, decay_s=0.8, decay_g=0.7, kappa=2.0,
                  **({"theta": 1.0} if name == "srm_forward" else {}))


@pytest.mark.parametrize("library", ["cpu", "emulation"])
@pytest.mark.parametrize("name", ["srm_forward", "srm_backward"])
def test_event_sizes_whose_product_overflows_are_an_error(library, name):
    """Finding 4: ``B * T * N == 0`` in int64 wrapped to 0 for B = T = N = 2^22, and the CPU library
    returned success having done nothing (NULL pointers and all)."""
    from exodus_lightning.ops import event

    lib = event.library() if library == "cpu" else event.emulation_library()
    with pytest.raises(RuntimeError, match=r"B \* T \* N overflows int64 \(4194304 \* 4194304 \* 4194304\)"):
        lib.call("event_" + name, _event_args(event, name))


@pytest.mark.parametrize("library", ["cpu", "emulation"])
@pytest.mark.parametrize("name", ["lif_forward", "lif_backward", "leaky_forward", "leaky_backward"])
def test_core_sizes_whose_product_overflows_are_an_error(library, name):
    from exodus_lightning import _native

    lib = _native.cpu() if library == "cpu" else _native.emulation()
    struct = {"lif_forward": _native.LifForwardArgs, "lif_backward": _native.LifBackwardArgs,
              "leaky_forward": _native.LeakyForwardArgs, "leaky_backward": _native.LeakyBackwardArgs}[name]
    with pytest.raises(RuntimeError, match=r"B \* T \* N overflows int64 \(4194304 \* 4194304 \* 4194304\)"):
        lib.call(name, struct(B=BIG, T=BIG, N=BIG, dtype=1))


@pytest.mark.parametrize("library", ["cpu", "emulation"])
def test_sparse_sizes_whose_product_overflows_are_an_error(library):
    from exodus_lightning.ops import sparse

    lib = sparse.library() if library == "cpu" else sparse.emulation_library()
    with pytest.raises(RuntimeError, match=r"B \* T \* N overflows int64"):
        lib.call("sparse_forward", sparse.ForwardArgs(B=BIG, T=2**20, N=BIG, dtype=1))
    with pytest.raises(RuntimeError, match=r"B \* T \* N_in overflows int64 \(2 \* 3 \* 4611686018427387904\)"):
        lib.call("sparse_backward", sparse.BackwardArgs(B=2, T=3, N_out=4, N_in=2**62, dtype=1))


# ------------------------------------------------------------------ NULL pointers and empty tensors


@pytest.mark.parametrize("missing", ["offsets", "times", "fvals", "grad_spikes", "e"])
@pytest.mark.parametrize("library", ["cpu", "emulation"])
def test_sparse_backward_names_a_null_pointer(missing, library):
    """Finding 5: the CPU sparse backward checked only offsets and e; a NULL grad_spikes, times or
    fvals was dereferenced (segmentation fault).  Every library now names the argument."""
    from exodus_lightning.ops import sparse

    lib = sparse.library() if library == "cpu" else sparse.emulation_library()
    active = sparse.active_set_from_mask(torch.ones(2, 3, 4, dtype=torch.bool), dtype=D)
    grad, e, powers = torch.ones(2, 3, 4, dtype=D), torch.empty(active.count, dtype=D), torch.empty(4, dtype=D)
    given = dict(offsets=active.offsets, times=active.times, fvals=active.fvals, grad_spikes=grad, e=e)
    pointers = {k: (None if k == missing else t.data_ptr()) for k, t in given.items()}
    args = sparse.BackwardArgs(B=2, T=3, N_out=4, N_in=0, dtype=1, alpha=0.9, reset_scale=1.0, powers=powers.data_ptr(),
                               **pointers)
    expected = 2 * 4 + 1 if missing == "offsets" else 2 * 3 * 4
    with pytest.raises(RuntimeError, match=rf"backward.*: {missing} is NULL \({expected} elements expected\)"):
        lib.call("sparse_backward", args)


EMPTY_SHAPES = [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0)]


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("library", ["cpu", "emulation"])
def test_sparse_ops_give_empty_results_for_empty_tensors(shape, library, monkeypatch):
    """Finding 5: an empty tensor's data_ptr() is 0 and the sparse ops raised "h, spikes, v and counts
    are required"; the C API takes zero sizes.  Empty inputs now give the reference loop's results:
    empty spikes, membrane, trace, delta and dL/dx, zero counts, and a zero weight gradient when the
    batch or the time axis is empty."""
    from exodus_lightning.ops import sparse
    from tests.reference import input_trace_reference, sparse_lif_reference

    if library == "emulation":
        emu = sparse.emulation_library()
        monkeypatch.setattr(sparse, "for_device", lambda device_type: emu)
    B, T, N = shape
    N_in = 4
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(B, T, N_in, generator=g) < 0.5).to(D)
    w = torch.randn(N, N_in, generator=g, dtype=D).requires_grad_()
    h = x @ w.t()
    s_ref, v_ref = sparse_lif_reference(h, 0.9, 1.0, 1.0, 0.3, 5.0, delay=True, strict=True)
    spikes, v, counts = sparse.lif_forward(h.detach(), 0.9, 1.0, 1.0, 0.3, 5.0, True, True)
    assert spikes.shape == v.shape == (B, T, N) and torch.equal(spikes, s_ref) and torch.equal(v, v_ref.detach())
    assert counts.shape == (B * N,) and not counts.any()
    active = sparse.collect_active(v, counts, 1.0, 0.3, 5.0)
    assert active.count == 0 and active.offsets.shape == (B * N + 1,)
    trace = sparse.input_trace(x, 0.9, True)
    assert torch.equal(trace, input_trace_reference(x, 0.9, True))
    grad = torch.randn(B, T, N, generator=g, dtype=D)
    (dw_ref,) = torch.autograd.grad((s_ref * grad).sum(), w, allow_unused=True, materialize_grads=True)
    for mode in (0, 1, 2):
        in_active = sparse.active_set_from_mask(x != 0, dtype=D) if mode == 2 else None
        out = sparse.sparse_backward(active, grad, 0.9, 1.0, False, True, trace, w.detach(), mode, in_active)
        assert torch.equal(out["grad_w"], dw_ref), mode
        if mode == 1:
            assert out["delta"].shape == (B, T, N) and not out["delta"].any()
        if mode == 2:
            assert out["grad_x"].shape == (B, T, N_in) and not out["grad_x"].any()
    delta = sparse.dense_backward(v, grad, 0.9, 1.0, 1.0, 0.3, 5.0, False, True)
    assert delta.shape == (B, T, N)


@pytest.mark.parametrize("library", ["cpu", "emulation"])
@pytest.mark.parametrize("counts_are", ["too_few", "too_many", "moved"])
def test_collect_with_counts_that_do_not_match_v_is_an_error(library, counts_are, monkeypatch):
    """collect_active writes each (b, j)'s active entries into the slot the counts give it; counts of
    another membrane made the kernels write past the slots (a heap-buffer-overflow found by the
    property tests).  The kernels now stay inside the slots and report the mismatch."""
    from exodus_lightning.ops import sparse

    if library == "emulation":
        emu = sparse.emulation_library()
        monkeypatch.setattr(sparse, "for_device", lambda device_type: emu)
    g = torch.Generator().manual_seed(0)
    v = 1 + 0.3 * torch.randn(2, 6, 3, generator=g, dtype=D)
    counts = ((v - 1).abs() < 0.2).sum(1).reshape(-1)
    assert counts.sum() > 2
    wrong = {"too_few": counts - (counts > 0).long(), "too_many": counts + 1, "moved": counts.roll(1)}[counts_are]
    if counts_are == "moved":
        assert not torch.equal(wrong, counts)
    with pytest.raises(ValueError, match="counts do not match the active entries of v"):
        sparse.collect_active(v, wrong, 1.0, 0.2, 5.0)
    active = sparse.collect_active(v, counts, 1.0, 0.2, 5.0)  # the right counts
    assert torch.equal(active.mask(), (v - 1).abs() < 0.2)
