"""Sparse spiking gradient descent (issue 10): the active-set backward equals dense BPTT with the
truncated surrogate and detached reset (float64), Prop. 1 memoisation, edge cases, regularisers,
bad input."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import _native, losses
from exodus_lightning.algorithms import sparse_sgd as S
from exodus_lightning.ops import sparse as ops

D = torch.float64
BETA = 100.0


@pytest.fixture(params=_native.ISAS)
def cpu_isa(request):
    """Runs a test once per copy of the CPU kernels (baseline, AVX2, AVX-512: the same loops at
    different vector widths, so different SIMD tails), skipping the copies this CPU lacks."""
    lib = ops.library()
    if request.param not in lib.available_isas():
        pytest.skip(f"this CPU or build has no {request.param} copy of the sparse kernels "
                    f"(available: {', '.join(lib.available_isas())})")
    before = lib.isa()
    lib.set_isa(request.param)
    yield request.param
    lib.set_isa(before)


class _Spike(torch.autograd.Function):
    """Heaviside V > theta with the truncated surrogate (the reference's own formula)."""

    @staticmethod
    def forward(ctx, v, theta, b_th):
        ctx.save_for_backward(v)
        ctx.theta, ctx.b_th = theta, b_th
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        d = (v - ctx.theta).abs()
        f = torch.where(d < ctx.b_th, 1 / (BETA * d + 1) ** 2, torch.zeros_like(v))
        return g * f, None, None


def ref_layer(x, w, alpha, b_th, exact=False, theta=1.0, rs=1.0):
    """Plain PyTorch loop of suppl. eq. (17)-(19): V[t+1] = a V[t] + h[t] - rs S[t], V[0] = 0."""
    B, T, _ = x.shape
    h = x @ w.t()
    v = h.new_zeros(B, w.shape[0])
    s = torch.zeros_like(v)
    out = []
    for t in range(T):
        inp = h[:, t - 1] if t > 0 else torch.zeros_like(v)
        v = alpha * v + inp - rs * (s if exact else s.detach())
        s = _Spike.apply(v, theta, b_th)
        out.append(s)
    return torch.stack(out, 1)


def _weights(sizes, seed, scale):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, a, generator=g, dtype=D) * scale / math.sqrt(a)) for a, b in zip(sizes[:-1], sizes[1:])]


def _net(sizes, ws, b_th, backend="sparse", gradient="detached"):
    layers = []
    for (a, b), w in zip(zip(sizes[:-1], sizes[1:]), ws):
        layer = S.SparseLinearLIF(a, b, tau_mem=10.0, b_th=b_th, backend=backend, gradient=gradient).double()
        with torch.no_grad():
            layer.weight.copy_(w)
        layers.append(layer)
    return layers


def _run(layers, x):
    active = None
    for layer in layers:
        x = layer(x, input_active=active)
        active = layer.last_active
    return x


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("b_th", [0.05, 0.2, math.inf])
@pytest.mark.parametrize("gradient", ["detached", "exact"])
@pytest.mark.parametrize("input_path", ["dots", "products"])
def test_sparse_equals_dense_bptt(depth, b_th, gradient, input_path, monkeypatch):
    """Both ways of the sparse input gradient (the layers choose by cost; forced here)."""
    monkeypatch.setattr(ops, "DEFAULT_INPUT_PATH", input_path)
    torch.manual_seed(depth)
    sizes = [12, 16, 10][: depth + 1]
    B, T = 3, 40
    x = (torch.rand(B, T, sizes[0], dtype=D) < 0.3).to(D)
    ws = _weights(sizes, seed=depth, scale=3.0)
    G = torch.randn(B, T, sizes[-1], dtype=D)
    alpha = math.exp(-1 / 10.0)

    # reference: PyTorch loop, autograd
    wr = [w.clone().requires_grad_() for w in ws]
    xr = x.clone().requires_grad_()
    y = xr
    for w in wr:
        y = ref_layer(y, w, alpha, b_th, exact=gradient == "exact")
    (y * G).sum().backward()
    assert all(w.grad.abs().sum() > 0 for w in wr), "the case must exercise nonzero gradients"

    for backend in ("sparse", "dense"):
        layers = _net(sizes, ws, b_th, backend, gradient)
        xs = x.clone().requires_grad_()
        out = _run(layers, xs)
        assert torch.equal(out, y.detach()), "forward spikes must equal the reference bit for bit"
        (out * G).sum().backward()
        for layer, w in zip(layers, wr):
            torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-10, atol=1e-12)
        # the first layer has no input_active: dense input gradient, equal everywhere
        torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-10, atol=1e-12)
    assert 0 < layers[-1].last_active.fraction <= 1
    if b_th == math.inf:
        assert layers[-1].last_active.fraction == 1.0


def test_active_set_strict_boundary_and_count():
    v = torch.tensor([[[1.2, 0.8, 1.0, 1.19999], [0.0, 1.0 + 0.2, 0.81, 5.0]]], dtype=D)
    counts = (S.active_mask(v, 1.0, 0.2)).permute(0, 2, 1).sum(2).reshape(-1)
    a = ops.collect_active(v, counts, 1.0, 0.2, BETA)
    torch.testing.assert_close(a.mask(), (v - 1).abs() < 0.2)
    m = a.mask()
    torch.testing.assert_close(a.fvals[: a.count].sort().values,
                               S.truncated_surrogate(v, 1.0, BETA, 0.2)[m].sort().values)


def test_memoised_delta_equals_naive_sum():
    torch.manual_seed(0)
    B, T, N = 2, 60, 7
    alpha = 0.9
    v = 1 + 0.4 * torch.randn(B, T, N, dtype=D)
    mask = (v - 1).abs() < 0.2
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    act = ops.active_set_from_mask(mask, f)
    g = torch.randn(B, T, N, dtype=D)
    out = ops.sparse_backward(act, g, alpha, 1.0, False, True, None, None, input_mode=1)
    e = g * f  # zero off the active set
    naive = torch.zeros_like(e)
    for t in range(T):  # O(T^2): delta[t] = sum_{k>t} alpha^{k-t-1} e[k]
        for k in range(t + 1, T):
            naive[:, t] += alpha ** (k - t - 1) * e[:, k]
    torch.testing.assert_close(out["delta"], naive, rtol=1e-11, atol=1e-13)
    # the Prop. 1 walk restricted to needed times (input_mode 2) gives the same delta there
    N_in = 5
    w = torch.randn(N, N_in, dtype=D)
    in_mask = torch.rand(B, T, N_in) < 0.1
    out2 = ops.sparse_backward(act, g, alpha, 1.0, False, True, None, w, 2, ops.active_set_from_mask(in_mask))
    torch.testing.assert_close(out2["grad_x"], torch.where(in_mask, naive @ w, torch.zeros(())), rtol=1e-11, atol=1e-13)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("needed", ["few", "many"])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("input_path", ["dots", "products"])
def test_sparse_input_gradient_both_delta_paths_equal_naive(needed, exact, dtype, input_path):
    """The input gradient by dot products computes delta at the needed times by the Prop. 1 walk
    when few times are needed and by the SIMD dense scan when many are; by products it scans
    sum_j W[j, :] g_v[t, j] instead.  All equal the naive O(T^2) sum, the weight gradient equals the
    trace formula, and grad_x is zero everywhere else — including a sample with no active input at
    all — even when the output memory held garbage."""
    g = torch.Generator().manual_seed(5 if needed == "few" else 6)
    B, T, N, N_in, alpha, rs = 4, 64, 70, 45, 0.85, 0.7  # N > one scan block (64): exercises the tail
    v = 1 + 0.4 * torch.randn(B, T, N, generator=g, dtype=D)
    mask = (v - 1).abs() < 0.2
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    act = ops.active_set_from_mask(mask, f, dtype)
    gs = torch.randn(B, T, N, generator=g, dtype=D)
    w = torch.randn(N, N_in, generator=g, dtype=D)
    if needed == "few":  # 2 of 64 times per sample: the walk (K * 8 < T)
        in_mask = torch.zeros(B, T, N_in, dtype=torch.bool)
        in_mask[:, 10] = torch.rand(B, N_in, generator=g) < 0.3
        in_mask[:, 50] = torch.rand(B, N_in, generator=g) < 0.3
    else:  # nearly every time: the scan
        in_mask = torch.rand(B, T, N_in, generator=g) < 0.2
    in_mask[2] = False  # a sample with nothing active
    x = (torch.rand(B, T, N_in, generator=g) < 0.2).to(D)

    # float64 reference: e (or e-hat) by the exact recursion, delta[t] = g_v[t + 1] (delay)
    gv = torch.zeros(B, N, dtype=D)
    delta = torch.zeros(B, T, N, dtype=D)
    ehat = torch.zeros(B, T, N, dtype=D)
    for t in range(T - 1, -1, -1):
        delta[:, t] = gv
        e = gs[:, t] * f[:, t] - (rs * f[:, t] * gv if exact else 0)
        ehat[:, t] = e
        gv = e + alpha * gv
    trace = torch.zeros(B, T, N_in, dtype=D)
    acc = torch.zeros(B, N_in, dtype=D)
    for t in range(T):
        acc = alpha * acc + (x[:, t - 1] if t > 0 else 0)
        trace[:, t] = acc
    ref_gx = torch.where(in_mask, delta @ w, torch.zeros((), dtype=D))
    ref_gw = torch.einsum("btj,bti->ji", ehat, trace)

    garbage = torch.full((B, T, N_in), float("nan"), dtype=dtype)
    del garbage  # the allocator tends to hand this memory to grad_x next
    out = ops.sparse_backward(act, gs.to(dtype), alpha, rs, exact, True, trace.to(dtype), w.to(dtype), 2,
                              ops.active_set_from_mask(in_mask, None, dtype), input_path=input_path)
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(out["grad_x"].double(), ref_gx, **tol)
    torch.testing.assert_close(out["grad_w"].double(), ref_gw, **tol)
    assert torch.equal(out["grad_x"][~in_mask], torch.zeros_like(out["grad_x"][~in_mask]))
    assert ref_gx.abs().sum() > 0 and int(in_mask.sum()) > 0


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weight_gradient_over_sample_blocks_equals_trace_formula(dtype):
    """A sample's input trace larger than the weight gradient's block (4 MB: here 2.8 MB in float32,
    5.6 MB in float64, so one sample per block) makes the library sum dW block by block — dW
    zeroed by the first block, which has nothing active here, and added to by the others.  The
    result is still sum over active entries of e * trace (float64 reference)."""
    g = torch.Generator().manual_seed(11)
    B, T, N, N_in, alpha = 3, 20, 6, 35_000, 0.9
    v = 1 + 0.4 * torch.randn(B, T, N, generator=g, dtype=D)
    mask = (v - 1).abs() < 0.2
    mask[0] = False  # the first block adds nothing: the zeroing must not depend on it
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    gs = torch.randn(B, T, N, generator=g, dtype=D)
    trace = torch.rand(B, T, N_in, generator=g, dtype=D)  # the kernel only reads its rows
    e = torch.where(mask, gs * f, torch.zeros((), dtype=D))
    ref_gw = torch.einsum("btj,bti->ji", e, trace)
    out = ops.sparse_backward(ops.active_set_from_mask(mask, f, dtype), gs.to(dtype), alpha, 1.0, False, True,
                              trace.to(dtype), None, 0)
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(out["grad_w"].double(), ref_gw, **tol)
    assert ref_gw.abs().sum() > 0


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_row_sums_of_every_group_remainder_equal_reference(dtype, monkeypatch):
    """The kernels add rows eight per pass and the remaining m mod 8 in one more pass (a pass per
    remainder size): output neurons active 0 to ~40 times (dW rows) and times with 0 to ~20 active
    output neurons (product-path rows) cover every remainder, with N_in = 37 leaving a SIMD tail.
    dW and grad_x equal their float64 formulas.  Every float tensor the op allocates starts as NaN,
    so an output element the kernels read before writing (dW's first block writes, never reads, the
    fresh rows) or never write would show."""
    g = torch.Generator().manual_seed(21)
    B, T, N, N_in, alpha = 2, 48, 24, 37, 0.9
    p = torch.linspace(0.0, 0.45, N, dtype=D)  # neuron j active with probability p[j]: counts 0 .. ~43
    mask = torch.rand(B, T, N, generator=g, dtype=D) < p
    mask[:, ::5] = False  # times with nothing active
    assert set((mask.sum((0, 1)) % 8).tolist()) == set(range(8))
    assert set((mask.sum(2).flatten() % 8).tolist()) == set(range(8))
    v = torch.where(mask, 1 + 0.1 * torch.rand(B, T, N, generator=g, dtype=D), torch.full((), 2.0, dtype=D))
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    gs = torch.randn(B, T, N, generator=g, dtype=D)
    trace = torch.rand(B, T, N_in, generator=g, dtype=D)
    w = torch.randn(N, N_in, generator=g, dtype=D)
    in_mask = torch.rand(B, T, N_in, generator=g) < 0.3
    e = torch.where(mask, gs * f, torch.zeros((), dtype=D))
    gv, delta = torch.zeros(B, N, dtype=D), torch.zeros(B, T, N, dtype=D)
    for t in range(T - 1, -1, -1):
        delta[:, t] = gv  # delay: dL/dx[t] = g_v[t + 1]
        gv = e[:, t] + alpha * gv
    ref_gw = torch.einsum("btj,bti->ji", e, trace)
    ref_gx = torch.where(in_mask, delta @ w, torch.zeros((), dtype=D))
    act, in_act = ops.active_set_from_mask(mask, f, dtype), ops.active_set_from_mask(in_mask, None, dtype)
    empty = torch.empty

    def nan_empty(*size, dtype=None, **kwargs):
        t = empty(*size, dtype=dtype, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)
    out = ops.sparse_backward(act, gs.to(dtype), alpha, 1.0, False, True, trace.to(dtype), w.to(dtype), 2, in_act,
                              input_path="products")
    monkeypatch.undo()
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(out["grad_w"].double(), ref_gw, **tol)
    torch.testing.assert_close(out["grad_x"].double(), ref_gx, **tol)
    assert torch.equal(out["grad_w"][0], torch.zeros_like(out["grad_w"][0]))  # neuron 0: never active


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("delay", [False, True])
def test_input_gradient_by_products_without_delay_and_auto_choice(delay):
    """Without the one-step delay dL/dx[t] = sum_j W[j, i] g_v[t, j] (not g_v[t + 1]): the product
    path equals the float64 reference and the dot-product path for both; "auto" follows
    products_are_cheaper (the same bits as the forced path it names)."""
    g = torch.Generator().manual_seed(11)
    B, T, N, N_in, alpha = 3, 30, 40, 33, 0.8
    v = 1 + 0.4 * torch.randn(B, T, N, generator=g, dtype=D)
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    act = ops.active_set_from_mask((v - 1).abs() < 0.2, f)
    gs = torch.randn(B, T, N, generator=g, dtype=D)
    w = torch.randn(N, N_in, generator=g, dtype=D)
    in_mask = torch.rand(B, T, N_in, generator=g) < 0.3
    gv, delta = torch.zeros(B, N, dtype=D), torch.zeros(B, T, N, dtype=D)
    for t in range(T - 1, -1, -1):
        nxt = gv
        gv = gs[:, t] * f[:, t] + alpha * gv
        delta[:, t] = nxt if delay else gv
    ref = torch.where(in_mask, delta @ w, torch.zeros((), dtype=D))
    in_act = ops.active_set_from_mask(in_mask)
    outs = {p: ops.sparse_backward(act, gs, alpha, 1.0, False, delay, None, w, 2, in_act, input_path=p)["grad_x"]
            for p in ("dots", "products")}
    for p, gx in outs.items():
        torch.testing.assert_close(gx, ref, rtol=1e-11, atol=1e-12, msg=p)
    assert ref.abs().sum() > 0
    choice = ops.products_are_cheaper(B, T, N, N_in, act.count, in_act.count)
    auto = ops.sparse_backward(act, gs, alpha, 1.0, False, delay, None, w, 2, in_act)["grad_x"]
    assert torch.equal(auto, outs["products" if choice else "dots"])


def test_input_gradient_path_choice_by_cost():
    """Products (a row of W per active output entry) from ~500 hidden neurons at equal activity;
    dot products for small layers and when few input entries are active."""
    for hidden in (500, 1000):
        K = int(32 * 100 * hidden * 0.02)
        assert ops.products_are_cheaper(32, 100, hidden, hidden, K, K)
    assert not ops.products_are_cheaper(32, 100, 200, 200, 12800, 12800)
    assert not ops.products_are_cheaper(32, 100, 1000, 1000, 64000, 640)  # input layer nearly silent
    with pytest.raises(ValueError, match="input_path"):
        act = ops.active_set_from_mask(torch.ones(1, 2, 3, dtype=torch.bool))
        ops.sparse_backward(act, torch.zeros(1, 2, 3, dtype=D), 0.9, 1.0, False, True, None,
                            torch.zeros(3, 4, dtype=D), 2, ops.active_set_from_mask(torch.ones(1, 2, 4, dtype=torch.bool)),
                            input_path="transpose")


def test_native_input_mode_3_checks_its_arguments():
    """The C entry point names what input_mode 3 lacks (W itself, not only W^T)."""
    args = ops.BackwardArgs(B=1, T=1, N_out=1, N_in=1, dtype=1, alpha=0.9, input_mode=3)
    off, times = torch.zeros(2, dtype=torch.int64), torch.zeros(1, dtype=torch.int32)
    one = torch.zeros(1, dtype=D)
    args.offsets, args.times, args.fvals, args.grad_spikes, args.e = (
        off.data_ptr(), times.data_ptr(), one.data_ptr(), one.data_ptr(), one.data_ptr())
    args.in_offsets, args.in_times, args.grad_x, args.w_t = off.data_ptr(), times.data_ptr(), one.data_ptr(), one.data_ptr()
    with pytest.raises(RuntimeError, match=r"backward \(input_mode 3\): w is NULL \(1 elements expected\)"):
        ops.library().call("sparse_backward", args)
    args.input_mode = 4
    with pytest.raises(RuntimeError, match="input_mode must be 0, 1, 2 or 3"):
        ops.library().call("sparse_backward", args)


@pytest.mark.usefixtures("cpu_isa")
def test_nothing_active_zero_gradient():
    layers = _net([6, 5, 4], [torch.zeros(5, 6, dtype=D), torch.zeros(4, 5, dtype=D)], 0.2)
    x = torch.ones(2, 10, 6, dtype=D, requires_grad=True)
    out = _run(layers, x)
    assert layers[0].last_active.count == 0 and out.sum() == 0
    out.sum().backward()
    for layer in layers:
        assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.usefixtures("cpu_isa")
def test_float32_runs_and_matches_dense():
    torch.manual_seed(1)
    x = (torch.rand(2, 30, 8) < 0.3).float()
    ws = [w.float() for w in _weights([8, 9, 6], 3, 3.0)]
    grads = {}
    for backend in ("sparse", "dense"):
        layers = [S.SparseLinearLIF(a, b, b_th=0.2, backend=backend) for a, b in [(8, 9), (9, 6)]]
        for layer, w in zip(layers, ws):
            with torch.no_grad():
                layer.weight.copy_(w)
        _run(layers, x).sum().backward()
        grads[backend] = [layer.weight.grad for layer in layers]
    for a, b in zip(grads["sparse"], grads["dense"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_regularizer_gradients_equal_autograd():
    torch.manual_seed(0)
    s = (torch.rand(4, 20, 6, dtype=D) < 0.2).to(D)
    s[0] = 0  # silent sample: lower regulariser active
    s[1] = 1  # busy sample: upper regulariser active
    params = (0.06, 1.0, 100.0, 1e-3)
    sr = s.clone().requires_grad_()
    (losses.upper_activity_regularizer(sr, params[0], params[1])
     + losses.lower_activity_regularizer(sr, params[2], params[3])).backward()
    torch.testing.assert_close(S.activity_regularizer_grad(s, *params), sr.grad, rtol=1e-12, atol=1e-15)
    sr2 = s.clone().requires_grad_()
    losses.ActivityRegularizer(0.06, 10.0, 100.0, 2.0)(sr2).backward()
    torch.testing.assert_close(S.activity_regularizer_grad(s, 0.06, 10.0, 100.0, 2.0), sr2.grad)


def test_snn_trains_one_step_and_injects_regularizer():
    torch.manual_seed(0)
    net = S.SparseSNN(10, 3, hidden=(12, 12), b_th=0.2, upper_strength=0.0, lower_strength=0.0)
    x = (torch.rand(4, 30, 10) < 0.3).float()
    out = net(x)
    assert out.shape == (4, 30, 3) and len(net.last_activity) == 2
    out.sum().backward()
    g0 = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.strengths = (0.06, 1.0, 100.0, 1e-3)
    net(x).sum().backward()
    assert net.last_regularization is not None and net.last_regularization > 0
    assert any(not torch.equal(a, p.grad) for a, p in zip(g0, net.parameters()))


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="b_th"):
        S.SparseLinearLIF(3, 4, b_th=-1.0)
    with pytest.raises(ValueError, match="backend"):
        S.SparseLinearLIF(3, 4, backend="slayer")
    with pytest.raises(ValueError, match="gradient"):
        S.SparseLinearLIF(3, 4, gradient="bptt")
    with pytest.raises(ValueError, match="in_features"):
        S.SparseLinearLIF(0, 4)
    with pytest.raises(TypeError, match="out_features"):
        S.SparseLinearLIF(3, 4.5)
    with pytest.raises(ValueError, match="tau_mem"):
        S.SparseLinearLIF(3, 4, tau_mem=0.0)
    with pytest.raises(ValueError, match="init"):
        S.SparseLinearLIF(3, 4, init="xavier")
    layer = S.SparseLinearLIF(3, 4)
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="x must have 3 features"):
        layer(torch.zeros(2, 5, 4))
    with pytest.raises(TypeError, match="x"):
        layer(torch.zeros(2, 5, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="input_active"):
        layer(torch.zeros(2, 5, 3), input_active="all")
    with pytest.raises(ValueError, match="hidden"):
        S.SparseSNN(3, 2, hidden=())
    with pytest.raises(ValueError, match="lower_strength"):
        S.SparseSNN(3, 2, lower_strength=-1.0)
    with pytest.raises(ValueError, match="b_th"):
        S.truncated_surrogate(torch.zeros(3), b_th=0.0)


def test_cpu_isa_selection_and_its_errors():
    """The copies of the CPU kernels: the best one runs unless asked; an unknown or missing copy is
    refused with the names of the available ones; build_info names the copy in use."""
    lib = ops.library()
    available, before = lib.available_isas(), lib.isa()
    assert available[0] == "baseline" and before in available
    try:
        for isa in available:
            lib.set_isa(isa)
            assert lib.isa() == isa and lib.build_info().endswith(f"(using {isa})")
        lib.set_isa(None)
        assert lib.isa() == available[-1]
        with pytest.raises(ValueError, match="isa must be one of baseline, avx2, avx512"):
            lib.set_isa("neon")
        assert lib.isa() == available[-1]
        for isa in set(_native.ISAS) - set(available):
            with pytest.raises(ValueError, match=f"lacks {isa}.*available: baseline"):
                lib.set_isa(isa)
        set_isa = lib.dll.exodus_set_isa
        assert set_isa(7) != 0 and "isa must be -1" in lib.last_error()
    finally:
        lib.set_isa(before)
    with pytest.raises(NotImplementedError, match=r"isa\(\) is a CPU-library function"):
        ops.emulation_library().isa()
    with pytest.raises(NotImplementedError, match=r"set_stream_threshold\(\) is a CPU-library function"):
        ops.emulation_library().set_stream_threshold(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_kernel_copy_gives_the_same_bits(dtype):
    """The copies differ only in vector width: without FMA and with sums over a fixed lane layout,
    forward, active set, errors, dW, both input-gradient paths and the dense baseline are bitwise
    equal across copies (so a run reproduces on any x86-64 machine).  53 and 300 neurons: SIMD tails."""
    lib = ops.library()
    available, before = lib.available_isas(), lib.isa()
    if len(available) < 2:
        pytest.skip(f"only the {available[0]} copy runs on this CPU: nothing to compare")
    results = {}
    try:
        for isa in available:
            lib.set_isa(isa)
            got = []
            for N in (53, 300):
                h = (0.7 * torch.randn(3, 40, N, generator=torch.Generator().manual_seed(N))).to(dtype)
                x = (torch.rand(3, 40, N, generator=torch.Generator().manual_seed(N + 1)) < 0.2).to(dtype)
                w = torch.randn(N, N, generator=torch.Generator().manual_seed(N + 2), dtype=dtype) / N ** 0.5
                gs = torch.randn(3, 40, N, generator=torch.Generator().manual_seed(N + 3), dtype=dtype)
                spikes, v, counts = ops.lif_forward(h, 0.9, 1.0, 1.0, 0.2, BETA, True, True)
                act = ops.collect_active(v, counts, 1.0, 0.2, BETA)
                trace = ops.input_trace(x, 0.9, True)
                got += [spikes, v, act.fvals, trace,
                        ops.dense_backward(v, gs, 0.9, 1.0, 1.0, 0.2, BETA, True, True)]
                for path in ("dots", "products"):
                    out = ops.sparse_backward(act, gs, 0.9, 1.0, True, True, trace, w, 2, act, input_path=path)
                    got += [out["e"], out["grad_w"], out["grad_x"]]
            results[isa] = got
    finally:
        lib.set_isa(before)
    ref = results["baseline"]
    assert ref[2].numel() > 100 and ref[-1].abs().sum() > 0
    for isa in available[1:]:
        for i, (a, b) in enumerate(zip(results[isa], ref)):
            assert torch.equal(a, b), f"{isa} differs from baseline in result {i}"


def test_info_reports_the_sparse_library_build_and_the_copy_in_use():
    from exodus_lightning.info import report

    lines = report().splitlines()
    at = next(i for i, line in enumerate(lines) if "libexodus_native.so: loaded from" in line)
    assert lines[at + 1].strip().startswith("built with: cpu: C++17")
    assert "isa baseline" in lines[at + 1] and lines[at + 1].endswith(f"(using {ops.library().isa()})")


def test_unknown_isa_request_in_the_environment_warns():
    import subprocess
    import sys

    code = "from exodus_lightning.ops import sparse; print(sparse.library().isa())"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "EXODUS_ISA": "sse9"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "EXODUS_ISA='sse9'" in r.stderr and "available: baseline" in r.stderr
    assert r.stdout.strip() == ops.library().available_isas()[-1]


@pytest.mark.usefixtures("cpu_isa")
def test_float32_forward_is_bitwise_the_reference_loop():
    """Every copy computes the forward in the reference's operation order without FMA: float32
    spikes and membranes equal a plain PyTorch float32 loop bit for bit (53 neurons: SIMD tails)."""
    g = torch.Generator().manual_seed(5)
    B, T, N, alpha, theta, rs = 3, 60, 53, math.exp(-1 / 7), 1.0, 0.8
    h = (0.6 * torch.randn(B, T, N, generator=g)).float()
    spikes, v_out, _ = ops.lif_forward(h, alpha, theta, rs, 0.2, BETA, True, True)
    a, r = torch.tensor(alpha, dtype=torch.float32), torch.tensor(rs, dtype=torch.float32)
    v, s_prev, h_prev = torch.zeros(B, N), torch.zeros(B, N), torch.zeros(B, N)
    vs, ss = [], []
    for t in range(T):
        v = (a * v + h_prev) - r * s_prev  # one-step delay: h[t - 1] reaches V[t]
        s = (v > theta).float()
        vs.append(v), ss.append(s)
        s_prev, h_prev = s, h[:, t]
    assert torch.equal(v_out, torch.stack(vs, 1)) and torch.equal(spikes, torch.stack(ss, 1))
    assert 0 < float(spikes.mean()) < 0.5


def test_missing_library_raises_clear_error(monkeypatch):
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setattr(_native, "find_library", lambda name: None)
    with pytest.raises(_native.NativeLibraryError, match="exodus_native"):
        ops.library()
