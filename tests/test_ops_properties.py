"""Property-based tests (hypothesis) of every native op against the independent reference loops of
tests/reference.py: random shapes (sizes 1 and up; size 0 in their own properties), every mode
combination, float32 and float64, the CPU library and the CUDA drivers compiled for the host (the
emulation), and every tensor argument given contiguous, transposed, sliced with a step, expanded
(stride 0) or with a storage offset.  Bad arguments are rejected with an error naming them.

The number of examples per test is the hypothesis profile's (tests/conftest.py: ``ci`` by default,
``--hypothesis-profile long`` for more).  Tensor values come from a drawn seed (hypothesis shrinks
the shapes and modes; the values stay those of the failing seed)."""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import exodus_lightning.surrogate as sg
from exodus_lightning import _native
from exodus_lightning.functional import leaky_integrator, lif_with_membrane
from exodus_lightning.ops import event as event_ops
from exodus_lightning.ops import sparse as sparse_ops
from tests.reference import (
    backward_ref, forward_ref, input_trace_reference, leaky_reference, lif_reference, sparse_lif_reference,
    srm_decay, truncated_surrogate,
)
from exodus_lightning.neuron_parameters import LIFParameters

LAYOUTS = ("contiguous", "transposed", "step", "expanded", "offset")
DTYPES = (torch.float32, torch.float64)
# of outputs that no threshold decision separates (gradients, membranes): see assert_close
TOL = {torch.float64: 1e-9, torch.float32: 2e-5}


# ------------------------------------------------------------------ tensors in every layout


def arrange(values: torch.Tensor, layout: str, requires_grad: bool = False, expand_dim: int = 0,
            keep_values: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(leaf, view)``: ``view`` has the shape of ``values``, holds them, and is laid out as ``layout``
    in the memory of ``leaf`` (what gradients are taken with respect to).

    transposed: the first and last dimensions swapped in memory; step: every other element of a
    buffer twice as long in the last dimension; expanded: stride 0 along ``expand_dim`` (the values
    become those of its first slice — unless ``keep_values``: then only where they are equal along it);
    offset: a contiguous view 3 elements into its storage.  A layout that does not exist for the
    values (a 1-d transpose, an empty expansion) gives a contiguous copy."""
    shape = values.shape
    if layout == "expanded" and values.ndim >= 1 and values.numel() > 0:
        first = values.narrow(expand_dim % values.ndim, 0, 1)
        if keep_values and not torch.equal(first.expand(shape), values):
            layout = "contiguous"
    with torch.no_grad():
        if layout == "transposed" and values.ndim >= 2:
            leaf = values.transpose(0, -1).contiguous()
        elif layout == "step" and values.ndim >= 1:
            leaf = values.new_zeros(*shape[:-1], 2 * shape[-1])
            leaf[..., ::2] = values
        elif layout == "expanded" and values.ndim >= 1 and values.numel() > 0:
            leaf = values.narrow(expand_dim % values.ndim, 0, 1).clone()
        elif layout == "offset":
            leaf = values.new_zeros(values.numel() + 3)
            leaf[3:] = values.reshape(-1)
        else:
            leaf = values.clone()
    leaf.requires_grad_(requires_grad)
    if layout == "transposed" and values.ndim >= 2:
        view = leaf.transpose(0, -1)
    elif layout == "step" and values.ndim >= 1:
        view = leaf[..., ::2]
    elif layout == "expanded" and values.ndim >= 1 and values.numel() > 0:
        view = leaf.expand(shape)
    elif layout == "offset":
        view = leaf[3:].view(shape)
    else:
        view = leaf
    return leaf, view


def test_profiles_bound_the_examples():
    """The README's numbers: 60 examples per test by default (CI), 1000 with --hypothesis-profile long."""
    assert settings.get_profile("ci").max_examples == 60
    assert settings.get_profile("long").max_examples == 1000


layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**31 - 1)


def uniform(shape, lo: float, hi: float, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


@contextlib.contextmanager
def native_library(kind: str) -> Iterator[None]:
    """Route the CPU tensors of every op to the CPU libraries ("cpu") or to the CUDA drivers compiled
    for the host ("emulation") for the duration of the block."""
    saved = [(m, m.for_device) for m in (_native, sparse_ops, event_ops)]
    if kind == "emulation":
        _native.for_device = lambda device_type: _native.emulation()
        sparse_ops.for_device = lambda device_type: sparse_ops.emulation_library()
        event_ops.for_device = lambda device_type: event_ops.emulation_library()
    try:
        yield
    finally:
        for module, fn in saved:
            module.for_device = fn


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """max |got - want| within TOL of max(max |want|, 1): the inputs are of order 1, and a sum that
    cancels to near 0 is only as exact as the terms it adds (float32 against a float64 loop)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if want.numel():
        err = (got.double() - want.double()).abs().max().item() / max(want.double().abs().max().item(), 1.0)
        assert err <= TOL[dtype], f"{what}: error {err:.3g} > {TOL[dtype]:g} (relative to max(max |want|, 1))"


def grads(outputs: list[Optional[torch.Tensor]], upstream: list[torch.Tensor],
          leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """d(sum of outputs * upstream) / d leaves, the upstream gradients handed to autograd as they are
    (with their layouts); absent outputs are skipped."""
    pairs = [(o, u) for o, u in zip(outputs, upstream) if o is not None and o.requires_grad]
    if not pairs:  # nothing depends on the leaves (e.g. the input reaches no step before the end)
        return [torch.zeros_like(t) for t in leaves]
    return list(torch.autograd.grad([o for o, _ in pairs], leaves, [u for _, u in pairs], allow_unused=True,
                                    materialize_grads=True))


# ------------------------------------------------------------------ LIF through the public function

SURROGATES: dict[str, Callable] = {
    "single_exponential": sg.SingleExponential(),
    "fast_sigmoid": sg.FastSigmoid(slope=5.0),
    "gaussian": sg.Gaussian(),
    "python_callable": lambda v, th: torch.sigmoid(4 * (v - th)) * (1 - torch.sigmoid(4 * (v - th))),
}


@st.composite
def lif_cases(draw) -> dict:
    c = dict(
        dtype=draw(st.sampled_from(DTYPES)), B=draw(st.integers(1, 3)), T=draw(st.integers(1, 8)),
        features=tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))),
        reset=draw(st.sampled_from(["subtract", "zero"])), spike=draw(st.sampled_from(["single", "multi", 2, 3])),
        backend=draw(st.sampled_from(["exodus", "slayer", "bptt"])),
        library=draw(st.sampled_from(["cpu", "emulation"])),
        surrogate=draw(st.sampled_from(sorted(SURROGATES))), norm_input=draw(st.booleans()),
        min_v_mem=draw(st.sampled_from([None, -0.5, 0.0])),
        tau_mem=draw(st.sampled_from(["float", "inf", "per_neuron", "broadcast", "trained"])),
        threshold=draw(st.sampled_from(["float", "per_neuron", "broadcast"])),
        tau_syn=draw(st.sampled_from([None, "float", "per_neuron"])),
        state=draw(st.sampled_from([None, "v0", "v0_i0"])), split=draw(st.integers(0, 8)),
        seed=draw(seeds), layouts=draw(st.lists(layouts, min_size=12, max_size=12)),
        expand_dims=draw(st.lists(st.integers(0, 2), min_size=12, max_size=12)),
    )
    if c["norm_input"] and c["tau_mem"] == "inf":
        c["norm_input"] = False  # c = 1 - alpha = 0: rejected (test_lif_rejects_bad_arguments)
    return c


def _neuron_values(kind, features, lo, hi, dtype, g):
    if kind == "float":
        return float(uniform((), lo, hi, torch.float64, g))
    if kind == "inf":
        return math.inf
    if kind == "broadcast":  # right-aligned broadcast: ones in front of the last feature dimension
        return uniform((1,) * (len(features) - 1) + features[-1:], lo, hi, dtype, g)
    return uniform(features, lo, hi, dtype, g)


@given(lif_cases())
def test_lif_matches_the_reference_loop(c):
    """Spikes bit for bit, membranes, final state and the gradients w.r.t. x, v0, i0 and a trained
    tau_mem against BPTT through the reference loop (in the data's dtype: the same roundings decide the
    same spikes); SLAYER against the loop with the reset left out of the gradient; a sequence cut in
    two calls (the state carried) equals one."""
    dtype, B, T, features = c["dtype"], c["B"], c["T"], c["features"]
    g = torch.Generator().manual_seed(c["seed"])
    lay, dims = iter(c["layouts"]), iter(c["expand_dims"])

    def arranged(values, requires_grad=False):
        if not isinstance(values, torch.Tensor):
            return None, values
        return arrange(values, next(lay), requires_grad, next(dims))

    drive = (4.0 if c["norm_input"] else 1.2) * (0.4 if c["tau_syn"] else 1.0)
    x_leaf, x = arranged(uniform((B, T, *features), -0.3 * drive, drive, dtype, g), True)
    tau_kind = "per_neuron" if c["tau_mem"] == "trained" else c["tau_mem"]
    tau_leaf, tau = arranged(_neuron_values(tau_kind, features, 1.5, 30.0, dtype, g), c["tau_mem"] == "trained")
    _, theta = arranged(_neuron_values(c["threshold"], features, 0.4, 1.6, dtype, g))
    _, tau_syn = arranged(_neuron_values(c["tau_syn"], features, 1.5, 10.0, dtype, g) if c["tau_syn"] else None)
    v0_leaf, v0 = arranged(uniform((B, *features), -0.3, 1.0, dtype, g) if c["state"] else None, True)
    i0_leaf, i0 = arranged(uniform((B, *features), 0.0, 0.5, dtype, g)
                           if c["state"] == "v0_i0" and c["tau_syn"] else None, True)
    upstream = [arranged(uniform(shape, -1.0, 1.0, dtype, g))[1]
                for shape in ((B, T, *features), (B, T, *features), (B, *features), (B, *features))]
    leaves = [t for t in (x_leaf, v0_leaf, i0_leaf, tau_leaf) if t is not None and t.requires_grad]
    kw = dict(reset=c["reset"], spike=c["spike"], tau_syn=tau_syn, norm_input=c["norm_input"],
              min_v_mem=c["min_v_mem"], surrogate=SURROGATES[c["surrogate"]])

    s_ref, v_ref, vf_ref, if_ref = lif_reference(x, tau, theta, v0=v0, i0=i0, dtype=dtype,
                                                 reset_in_gradient=c["backend"] != "slayer", **kw)
    ref_grads = grads([s_ref, v_ref, vf_ref, if_ref], upstream, leaves)

    split = min(c["split"], T)
    p = LIFParameters(tau_mem=tau, threshold=theta, **kw)
    with native_library(c["library"]):
        if 0 < split < T:  # two calls, the first's final state starting the second
            s1, v1, state = lif_with_membrane(x[:, :split], p, backend=c["backend"], v0=v0, i0=i0)
            s2, v2, state = lif_with_membrane(x[:, split:], p, backend=c["backend"], v0=state.v, i0=state.i)
            s, v = torch.cat([s1, s2], 1), torch.cat([v1, v2], 1)
        else:
            s, v, state = lif_with_membrane(x, p, backend=c["backend"], v0=v0, i0=i0)
        got_grads = grads([s, v, state.v, state.i], upstream, leaves)

    assert torch.equal(s, s_ref), "spikes differ from the reference loop"
    assert_close(v, v_ref, dtype, "membrane")
    assert_close(state.v, vf_ref, dtype, "final membrane")
    assert (state.i is None) == (if_ref is None)
    if if_ref is not None:
        assert_close(state.i, if_ref, dtype, "final synaptic current")
    for name, a, b in zip(("x", "v0", "i0", "tau_mem"), got_grads, ref_grads):
        assert_close(a, b, dtype, f"dL/d{name}")


@st.composite
def op_cases(draw) -> dict:
    return dict(dtype=draw(st.sampled_from(DTYPES)), B=draw(st.integers(1, 3)), T=draw(st.integers(1, 6)),
                N=draw(st.integers(1, 5)), per_neuron=draw(st.lists(st.booleans(), min_size=3, max_size=3)),
                synapse=draw(st.booleans()), reset_mode=draw(st.sampled_from([0, 1])),
                max_spikes=draw(st.sampled_from([1, 0, 2])), v_min=draw(st.sampled_from([None, -0.4])),
                norm_input=draw(st.booleans()), library=draw(st.sampled_from(["cpu", "emulation"])),
                seed=draw(seeds), layouts=draw(st.lists(layouts, min_size=10, max_size=10)),
                expand_dims=draw(st.lists(st.integers(0, 2), min_size=10, max_size=10)))


@given(op_cases())
def test_lif_ops_read_every_argument_in_any_layout(c):
    """The registered ops themselves (torch.ops.exodus.lif_forward / lif_backward), every tensor
    argument — x, alpha, theta, beta, v0, i0 and the upstream gradients — in any layout, against the
    reference loop (forward outputs; gradients w.r.t. x, v0 and i0 by BPTT)."""
    import exodus_lightning.ops  # noqa: F401  (registers the ops)

    dtype, B, T, N = c["dtype"], c["B"], c["T"], c["N"]
    g = torch.Generator().manual_seed(c["seed"])
    lay, dims = iter(c["layouts"]), iter(c["expand_dims"])

    def arranged(values, requires_grad=False, keep_values=False):
        return arrange(values, next(lay), requires_grad, next(dims), keep_values)

    def param(per_neuron, lo, hi):  # a decay or threshold: (N,) or (1,); tau from which alpha = exp(-1/tau)
        return uniform((N,) if per_neuron else (1,), lo, hi, dtype, g)

    tau, theta = param(c["per_neuron"][0], 1.5, 20.0), arranged(param(c["per_neuron"][1], 0.4, 1.5))[1]
    tau_syn = param(c["per_neuron"][2], 1.5, 8.0) if c["synapse"] else None
    x_leaf, x = arranged(uniform((B, T, N), -0.3, 3.0 if c["norm_input"] else 1.0, dtype, g), True)
    v0_leaf, v0 = arranged(uniform((B, N), -0.2, 1.0, dtype, g), True)
    i0_leaf, i0 = arranged(uniform((B, N), 0.0, 0.5, dtype, g), True) if c["synapse"] else (None, None)
    alpha = arranged(torch.exp(-1.0 / tau), keep_values=True)[1]  # the decays of tau, tau_syn: kept
    beta = arranged(torch.exp(-1.0 / tau_syn), keep_values=True)[1] if c["synapse"] else None
    upstream = [arranged(uniform(shape, -1.0, 1.0, dtype, g))[1] for shape in ((B, T, N), (B, T, N), (B, N))]
    leaves = [t for t in (x_leaf, v0_leaf, i0_leaf) if t is not None]
    spike = {1: "single", 0: "multi"}.get(c["max_spikes"], c["max_spikes"])
    reset = ("subtract", "zero")[c["reset_mode"]]
    surrogate = sg.SingleExponential()

    s_ref, v_ref, vf_ref, _ = lif_reference(x, tau, theta, reset, spike, tau_syn, c["norm_input"], c["v_min"],
                                            surrogate, v0, i0, dtype)
    ref = grads([s_ref, v_ref, vf_ref], upstream, leaves)
    with native_library(c["library"]):
        s, v, v_final, i_final, _, _ = torch.ops.exodus.lif_forward(
            x.detach(), alpha, theta, beta, v0.detach(), None if i0 is None else i0.detach(), c["reset_mode"],
            c["max_spikes"], c["v_min"], c["norm_input"], False)
        sid, p0, p1, p2 = surrogate.fused
        grad_x, grad_v0, grad_i0, _ = torch.ops.exodus.lif_backward(
            upstream[0], upstream[1], upstream[2], None, v, None, sid, p0, p1, p2, alpha, theta, beta,
            None, None, c["reset_mode"], c["max_spikes"], c["v_min"], c["norm_input"], 0, False)
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref), "forward differs from the reference loop"
    assert torch.equal(v_final, vf_ref)
    for name, got, leaf, want in zip(("x", "v0", "i0"), (grad_x, grad_v0, grad_i0), leaves, ref):
        # the ops return (B, T, N) / (B, N) gradients; the reference's are w.r.t. the leaves' memory
        assert_close(torch.autograd.grad({"x": x, "v0": v0, "i0": i0}[name], leaf, got)[0], want, dtype,
                     f"dL/d{name}")


@given(dtype=st.sampled_from(DTYPES), B=st.integers(1, 3), T=st.integers(1, 8), N=st.integers(1, 5),
       tau=st.sampled_from(["float", "inf", "per_neuron", "trained"]), norm_input=st.booleans(),
       with_v0=st.booleans(), backend=st.sampled_from(["exodus", "bptt"]),
       library=st.sampled_from(["cpu", "emulation"]), seed=seeds,
       lays=st.lists(layouts, min_size=4, max_size=4), expand_dims=st.lists(st.integers(0, 2), min_size=4, max_size=4))
def test_leaky_integrator_matches_the_reference_loop(dtype, B, T, N, tau, norm_input, with_v0, backend, library,
                                                     seed, lays, expand_dims):
    """v[t] = alpha v[t-1] + c x[t] and its gradients w.r.t. x, v0 and a trained tau against the float64
    loop (no threshold here: float32 data too is compared with the float64 loop)."""
    if norm_input and tau == "inf":
        norm_input = False
    g = torch.Generator().manual_seed(seed)
    x_leaf, x = arrange(uniform((B, T, N), -1.0, 1.0, dtype, g), lays[0], True, expand_dims[0])
    tau_values = _neuron_values("per_neuron" if tau == "trained" else tau, (N,), 1.5, 30.0, dtype, g)
    tau_leaf, tau_arg = (arrange(tau_values, lays[1], tau == "trained", expand_dims[1])
                         if isinstance(tau_values, torch.Tensor) else (None, tau_values))
    v0_leaf, v0 = arrange(uniform((B, N), -1.0, 1.0, dtype, g), lays[2], True, expand_dims[2]) if with_v0 \
        else (None, None)
    upstream = arrange(uniform((B, T, N), -1.0, 1.0, dtype, g), lays[3], False, expand_dims[3])[1]
    leaves = [t for t in (x_leaf, v0_leaf, tau_leaf) if t is not None and t.requires_grad]
    ref_tau = tau_arg.double() if isinstance(tau_arg, torch.Tensor) else tau_arg
    want = leaky_reference(x, ref_tau, v0, norm_input)
    ref = grads([want], [upstream.double()], leaves)
    with native_library(library):
        out = leaky_integrator(x, tau_arg, v0=v0, norm_input=norm_input, backend=backend)
        got = grads([out], [upstream], leaves)
    assert out.dtype == dtype
    assert_close(out, want.to(dtype), dtype, "output")
    for name, a, b in zip(("x", "v0", "tau"), got, ref):
        assert_close(a, b.to(dtype), dtype, f"dL/d{name}")


@given(fn=st.sampled_from(["lif", "leaky"]), shape=st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 3))
       .filter(lambda s: 0 in s), dtype=st.sampled_from(DTYPES))
def test_empty_lif_and_leaky_input_is_rejected_naming_x(fn, shape, dtype):
    """A neuron layer needs at least one sample, step and neuron: an empty batch, time or feature
    dimension is a ValueError naming x (never a kernel call with a zero size)."""
    x = torch.zeros(shape, dtype=dtype)
    with pytest.raises(ValueError, match=r"^x has (T = 0 time steps|an empty batch or feature dimension)"):
        if fn == "lif":
            lif_with_membrane(x, LIFParameters(tau_mem=5.0))
        else:
            leaky_integrator(x, 5.0)


BAD_LIF_ARGUMENTS = {
    "x": (dict(x=torch.zeros(2, 3)), ValueError, r"x must have shape \(B, T, \*features\)"),
    "tau_mem": (dict(tau_mem=-1.0), ValueError, r"tau_mem must be > 0"),
    "threshold": (dict(threshold=torch.ones(5)), ValueError, r"threshold of shape \(5,\) does not broadcast"),
    "tau_syn": (dict(tau_syn=float("nan")), ValueError, r"tau_syn must be > 0 and finite"),
    "reset": (dict(reset="soft"), ValueError, r"reset must be 'subtract' or 'zero'"),
    "spike": (dict(spike=0), ValueError, r"spike must be 'single', 'multi' or an int k >= 1"),
    "v0": (dict(v0=torch.zeros(2, 4)), ValueError, r"v0 must have shape \(B, \*features\) = \(2, 3\)"),
    "i0": (dict(i0=torch.zeros(2, 3)), ValueError, r"i0 was given but the neuron has no synapse"),
    "min_v_mem": (dict(min_v_mem=float("nan")), ValueError, r"min_v_mem must be a float or None"),
    "surrogate": (dict(surrogate=3), TypeError, r"surrogate must be callable"),
    "backend": (dict(backend="cuda"), ValueError, r"backend must be one of .exodus., .slayer., .bptt., got .cuda."),
    "dtype": (dict(x=torch.zeros(2, 4, 3, dtype=torch.int32)), TypeError, r"x must be a floating-point tensor"),
}


BAD_LEAKY_ARGUMENTS = {
    "x": (dict(x=torch.zeros(2, 0, 3)), ValueError, r"x has T = 0 time steps"),
    "tau": (dict(tau=torch.tensor([1.0, 0.0, 2.0])), ValueError, r"tau must be > 0"),
    "tau shape": (dict(tau=torch.ones(2, 1)), ValueError, r"tau of shape \(2, 1\) does not broadcast"),
    "v0": (dict(v0=torch.zeros(3, 3)), ValueError, r"v0 must have shape \(B, \*features\) = \(2, 3\)"),
    "norm_input": (dict(tau=math.inf, norm_input=True), ValueError, r"norm_input=True needs a finite tau"),
}


@given(fn=st.sampled_from(["lif", "leaky"]), data=st.data(), library=st.sampled_from(["cpu", "emulation"]))
def test_lif_and_leaky_reject_bad_arguments_naming_them(fn, data, library):
    table = BAD_LIF_ARGUMENTS if fn == "lif" else BAD_LEAKY_ARGUMENTS
    kwargs, error, message = table[data.draw(st.sampled_from(sorted(table)))]
    call = (dict(x=torch.zeros(2, 4, 3)) | ({"tau_mem": 5.0} if fn == "lif" else {"tau": 5.0})) | kwargs
    with native_library(library), pytest.raises(error, match=message):
        if fn == "lif":  # the neuron's arguments are checked where their LIFParameters is built
            neuron = {k: call.pop(k) for k in list(call) if k in LIFParameters.__dataclass_fields__}
            lif_with_membrane(p=LIFParameters(**neuron), **call)
        else:
            leaky_integrator(**call)


# ------------------------------------------------------------------ sparse spiking gradient descent

BETA_S = 5.0


@contextlib.contextmanager
def sparse_isa(isa: Optional[str]) -> Iterator[None]:
    """Run the CPU library's ``isa`` copy of the kernels (skipped by assume() when this CPU lacks it)."""
    lib = sparse_ops.library()
    if isa is None:
        yield
        return
    assume(isa in lib.available_isas())
    before = lib.isa()
    lib.set_isa(isa)
    try:
        yield
    finally:
        lib.set_isa(before)


@st.composite
def sparse_cases(draw, empty: bool = False) -> dict:
    size = st.integers(0, 3) if empty else st.integers(1, 4)
    c = dict(dtype=draw(st.sampled_from(DTYPES)), B=draw(size), T=draw(size if empty else st.integers(1, 8)),
             N=draw(size), N_in=draw(size))
    if empty:  # at least one of them
        c[draw(st.sampled_from(["B", "T", "N", "N_in"]))] = 0
    c |= dict(delay=draw(st.booleans()), strict=draw(st.booleans()), exact=draw(st.booleans()),
              b_th=draw(st.sampled_from([0.15, 0.4, math.inf])), reset_scale=draw(st.sampled_from([1.0, 0.7])),
              library=draw(st.sampled_from(["cpu", "emulation"])),
              isa=draw(st.sampled_from([None, *_native.ISAS])),
              input_mode=draw(st.sampled_from([0, 1, 2])), input_path=draw(st.sampled_from(["dots", "products"])),
              seed=draw(seeds), layouts=draw(st.lists(layouts, min_size=7, max_size=7)),
              expand_dims=draw(st.lists(st.integers(0, 2), min_size=7, max_size=7)))
    return c


def _check_sparse_ops(c: dict) -> None:
    """Forward, active set, trace, sparse backward (every input mode) and dense backward of one layer
    ``h = x W^T`` against BPTT through the reference loop with the truncated surrogate."""
    dtype, B, T, N, N_in = c["dtype"], c["B"], c["T"], c["N"], c["N_in"]
    alpha, theta, b_th = 0.85, 1.0, c["b_th"]
    g = torch.Generator().manual_seed(c["seed"])
    lay, dims = iter(c["layouts"]), iter(c["expand_dims"])

    def arranged(values, requires_grad=False):
        return arrange(values, next(lay), requires_grad, next(dims))

    x = arranged((torch.rand(B, T, N_in, generator=g) < 0.4).to(dtype), True)[1]
    w = arranged(uniform((N, N_in), -0.5, 2.5 / max(N_in, 1) ** 0.5, dtype, g), True)[1]
    grad = uniform((B, T, N), -1.0, 1.0, dtype, g)
    grad[..., ::3] = 0  # entries with e = 0 (the weight gradient skips them)
    grad = arranged(grad)[1]
    h = x @ w.t()
    s_ref, v_ref = sparse_lif_reference(h, alpha, theta, c["reset_scale"], b_th, BETA_S, c["delay"], c["strict"],
                                        c["exact"])
    dw_ref, dx_ref, dh_ref = grads([s_ref], [grad], [w, x, h])  # w.r.t. the views: the ops' outputs are theirs
    mask_ref = (v_ref.detach() - theta).abs() < b_th
    in_mask = (torch.rand(B, T, N_in, generator=g) < 0.5)

    def derived(values):  # values the others determine (h = x W^T, the membrane, the trace): kept
        return arrange(values, next(lay), False, next(dims), keep_values=True)[1]

    with native_library(c["library"]), sparse_isa(c["isa"] if c["library"] == "cpu" else None):
        h_arg = derived(h.detach())
        spikes, v, counts = sparse_ops.lif_forward(h_arg, alpha, theta, c["reset_scale"], b_th, BETA_S, c["delay"],
                                                   c["strict"])
        assert torch.equal(spikes, s_ref) and torch.equal(v, v_ref), "forward differs from the reference loop"
        assert torch.equal(counts, mask_ref.sum(1).reshape(-1))
        active = sparse_ops.collect_active(derived(v), counts, theta, b_th, BETA_S)
        assert torch.equal(active.mask(), mask_ref)
        m = active.mask()
        want_f = truncated_surrogate(v_ref.detach(), theta, b_th, BETA_S).permute(0, 2, 1)[m.permute(0, 2, 1)]
        assert_close(active.fvals[:active.count], want_f, dtype, "fvals")
        trace = sparse_ops.input_trace(x.detach(), alpha, c["delay"])
        assert_close(trace, input_trace_reference(x.detach(), alpha, c["delay"]), dtype, "trace")
        input_active = sparse_ops.active_set_from_mask(in_mask, dtype=dtype) if c["input_mode"] == 2 else None
        out = sparse_ops.sparse_backward(active, grad, alpha, c["reset_scale"], c["exact"], c["delay"],
                                         derived(trace), w.detach(), c["input_mode"], input_active,
                                         c["input_path"])
        delta = sparse_ops.dense_backward(derived(v), grad, alpha, theta, c["reset_scale"], b_th, BETA_S, c["exact"],
                                          c["delay"])
    assert_close(out["grad_w"], dw_ref, dtype, "dL/dW")
    if c["input_mode"] == 1:
        assert_close(out["delta"], dh_ref, dtype, "delta (input mode 1)")
    if c["input_mode"] == 2:
        assert_close(out["grad_x"], torch.where(in_mask, dx_ref, torch.zeros(())), dtype, "dL/dx at the active inputs")
    assert_close(delta, dh_ref, dtype, "dense delta")


@given(sparse_cases())
def test_sparse_ops_match_the_reference_loop(c):
    _check_sparse_ops(c)


@given(sparse_cases(empty=True))
def test_sparse_ops_on_empty_tensors_match_the_reference_loop(c):
    """Size 0 in any dimension: empty results of the right shapes, zero counts and a zero weight
    gradient, as the reference loop gives (the C API takes zero sizes)."""
    _check_sparse_ops(c)


BAD_SPARSE_CALLS: dict[str, tuple[Callable[[], object], type, str]] = {
    "h rank": (lambda: sparse_ops.lif_forward(torch.zeros(2, 3), 0.9, 1.0, 1.0, 0.2, 5.0, True, True),
               ValueError, r"h must have 3 dimensions"),
    "h dtype": (lambda: sparse_ops.lif_forward(torch.zeros(1, 2, 3, dtype=torch.int64), 0.9, 1.0, 1.0, 0.2, 5.0,
                                               True, True), TypeError, r"h must be float32 or float64"),
    "counts": (lambda: sparse_ops.collect_active(torch.zeros(2, 3, 4), torch.zeros(5, dtype=torch.int64), 1.0, 0.2,
                                                 5.0), ValueError, r"counts must be int64 with B \* N = 8 elements"),
    "x": (lambda: sparse_ops.input_trace(torch.zeros(3, 4), 0.9, True), ValueError, r"x must have 3 dimensions"),
    "grad_spikes shape": (lambda: sparse_ops.dense_backward(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), 0.9, 1.0,
                                                            1.0, 0.2, 5.0, False, True),
                          ValueError, r"grad_spikes must have shape \(1, 2, 3\)"),
    "trace": (lambda: sparse_ops.sparse_backward(sparse_ops.active_set_from_mask(torch.ones(1, 2, 3, dtype=torch.bool)),
                                                 torch.zeros(1, 2, 3, dtype=torch.float64), 0.9, 1.0, False, True,
                                                 torch.zeros(1, 5, 4, dtype=torch.float64), None, 0),
              ValueError, r"trace must have shape \(1, 2\) \+ \(N_in,\)"),
    "input_mode": (lambda: sparse_ops.sparse_backward(sparse_ops.active_set_from_mask(torch.ones(1, 2, 3,
                                                                                                 dtype=torch.bool)),
                                                      torch.zeros(1, 2, 3, dtype=torch.float64), 0.9, 1.0, False,
                                                      True, None, None, 5),
                   ValueError, r"input_mode must be 0, 1 or 2"),
}


@given(bad=st.sampled_from(sorted(BAD_SPARSE_CALLS)), library=st.sampled_from(["cpu", "emulation"]))
def test_sparse_ops_reject_bad_arguments_naming_them(bad, library):
    call, error, message = BAD_SPARSE_CALLS[bad]
    with native_library(library), pytest.raises(error, match=message):
        call()


# ------------------------------------------------------------------ event-driven backpropagation


class _SRM:
    """The reference loops' view of an SRM neuron configuration (tests/reference.py: forward_ref, backward_ref)."""

    def __init__(self, tau_mem, tau_syn, tau_grad, theta, decay, max_dudt_inv):
        self.tau_mem, self.tau_syn, self.tau_grad, self.theta, self.decay = tau_mem, tau_syn, tau_grad, theta, decay
        self.damping, self.max_dudt_inv = 1.0, max_dudt_inv

    def op_args(self) -> tuple[float, float, float, float]:
        """(decay_m, decay_s, decay_g, kappa) of the ops: ``exp(-1/tau)`` or ``1 - 1/tau``;
        ``kappa = tau_mem / (tau_mem - tau_syn)``."""
        return (srm_decay(self.tau_mem, self.decay), srm_decay(self.tau_syn, self.decay),
                srm_decay(self.tau_grad, self.decay), self.tau_mem / (self.tau_mem - self.tau_syn))


@st.composite
def event_cases(draw, empty: bool = False) -> dict:
    size = st.integers(0, 3) if empty else st.integers(1, 3)
    c = dict(dtype=draw(st.sampled_from(DTYPES)), B=draw(size), T=draw(size if empty else st.integers(1, 10)),
             N=draw(size))
    if empty:  # at least one of them
        c[draw(st.sampled_from(["B", "T", "N"]))] = 0
    c |= dict(M=draw(st.integers(1, 4)), decay=draw(st.sampled_from(["exp", "euler"])),
              tau_mem=draw(st.sampled_from([6.0, 8.0])), tau_syn=draw(st.sampled_from([2.0, 4.0])),
              tau_grad=draw(st.sampled_from([2.0, 3.0])), max_dudt_inv=draw(st.sampled_from([None, 4.0])),
              library=draw(st.sampled_from(["cpu", "emulation"])), seed=draw(seeds),
              layouts=draw(st.lists(layouts, min_size=5, max_size=5)),
              expand_dims=draw(st.lists(st.integers(0, 2), min_size=5, max_size=5)))
    return c


def _check_event_ops(c: dict) -> None:
    """srm_forward on ``x W^T`` and srm_backward against the brute-force loops over spikes: spikes and
    membrane, and dL/dW = sum_t e_w^T x, dL/dx = (e_in W) [x != 0] (the layer's S20/S21)."""
    dtype, B, T, N, M = c["dtype"], c["B"], c["T"], c["N"], c["M"]
    cfg = _SRM(c["tau_mem"], c["tau_syn"], c["tau_grad"], 1.0, c["decay"], c["max_dudt_inv"])
    g = torch.Generator().manual_seed(c["seed"])
    lay, dims = iter(c["layouts"]), iter(c["expand_dims"])

    def arranged(values, keep_values=True):  # keep_values: the others determine them (current = x W^T, ...)
        return arrange(values, next(lay), False, next(dims), keep_values)[1]

    x = (torch.rand(B, T, M, generator=g) < 0.4).double()
    w = torch.rand(N, M, generator=g, dtype=torch.float64) * 1.4 - 0.3
    grad_out = arranged(torch.randn(B, T, N, generator=g, dtype=torch.float64).to(dtype), keep_values=False)
    current = x @ w.t()
    s_ref, u_ref = forward_ref(current, cfg)
    # float32 decides a spike as the float64 loop does only away from the threshold
    margin = 1e-4 if dtype == torch.float32 else 1e-9
    assume(bool(((u_ref - cfg.theta).abs() > margin).all()))
    dw_ref, dx_ref = backward_ref(x, w, s_ref, u_ref, grad_out.double(), cfg)
    am, as_, ag, kappa = cfg.op_args()
    with native_library(c["library"]):
        spikes, du, dug, u = event_ops.srm_forward(arranged(current.to(dtype)), am, as_, ag, kappa, cfg.theta, True)
        assert torch.equal(spikes, s_ref.to(dtype)), "spikes differ from the brute-force loop"
        assert_close(u, u_ref.to(dtype), dtype, "membrane")
        clip = c["max_dudt_inv"] or 0.0
        e_w, e_in = event_ops.srm_backward(grad_out, arranged(spikes), arranged(du),
                                           arranged(dug), am, as_, ag, kappa, clip)
    assert e_w.shape == e_in.shape == (B, T, N)
    xd = x.to(dtype)
    assert_close(e_w.reshape(B * T, N).t() @ xd.reshape(B * T, M), dw_ref.to(dtype), dtype, "dL/dW")
    assert_close((e_in @ w.to(dtype)) * (xd != 0), dx_ref.to(dtype), dtype, "dL/dx")


@given(event_cases())
def test_event_ops_match_the_brute_force_loops(c):
    _check_event_ops(c)


@given(event_cases(empty=True))
def test_event_ops_on_empty_tensors_match_the_brute_force_loops(c):
    _check_event_ops(c)


BAD_EVENT_CALLS: dict[str, tuple[Callable[[], object], type, str]] = {
    "current rank": (lambda: event_ops.srm_forward(torch.zeros(2, 3), 0.9, 0.8, 0.7, 2.0, 1.0, False),
                     ValueError, r"current must have shape \(B, T, N\)"),
    "current dtype": (lambda: event_ops.srm_forward(torch.zeros(1, 2, 3, dtype=torch.float16), 0.9, 0.8, 0.7, 2.0,
                                                    1.0, False),
                      TypeError, r"current must be float32 or float64 on the CPU"),
    "decay": (lambda: event_ops.srm_forward(torch.zeros(1, 2, 3), 1.5, 0.8, 0.7, 2.0, 1.0, False),
              RuntimeError, r"decays must lie in \(0, 1\)"),
    "theta": (lambda: event_ops.srm_forward(torch.zeros(1, 2, 3), 0.9, 0.8, 0.7, 2.0, 0.0, False),
              RuntimeError, r"theta must be > 0"),
    "du shape": (lambda: event_ops.srm_backward(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4),
                                                torch.zeros(1, 2, 3), 0.9, 0.8, 0.7, 2.0, 0.0),
                 ValueError, r"du must have the shape of spikes \(1, 2, 3\)"),
}


@given(bad=st.sampled_from(sorted(BAD_EVENT_CALLS)), library=st.sampled_from(["cpu", "emulation"]))
def test_event_ops_reject_bad_arguments_naming_them(bad, library):
    call, error, message = BAD_EVENT_CALLS[bad]
    with native_library(library), pytest.raises(error, match=message):
        call()
