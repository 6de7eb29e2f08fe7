"""Export to and import from the Neuromorphic Intermediate Representation (NIR, package ``nir``),
so trained networks move to the other SNN libraries and to neuromorphic hardware.

Supported (both ways): ``nn.Linear`` <-> ``nir.Linear`` (no bias) / ``nir.Affine``; ``nn.Conv2d``
<-> ``nir.Conv2d``; :class:`~exodus_lightning.nn.SumPool2d` <-> ``nir.SumPool2d``; ``nn.Flatten``
<-> ``nir.Flatten``; :class:`~exodus_lightning.nn.LIF` <-> ``nir.LIF`` (``nir.CubaLIF`` with a
synapse); :class:`~exodus_lightning.nn.IF` <-> ``nir.IF``; :class:`~exodus_lightning.nn.LeakyIntegrator`
<-> ``nir.LI``; plus the graph's ``Input``/``Output`` nodes.  ``nn.Identity`` and ``nn.Dropout``
(identity at inference) are skipped on export.  Sequential models and graphs only (a chain
Input -> ... -> Output); ``RecurrentLIF`` is not exported.

Discretisation convention (dt = 1 time step, zero-order hold of the input over a step).  NIR nodes
are continuous-time; our layers are the exact solutions over one step of length dt = 1:

- ``nir.LIF``/``nir.LI``: ``tau dv/dt = (v_leak - v) + r I`` integrates over one step (I constant)
  to ``v[t] = alpha v[t-1] + (1 - alpha) r I[t]`` with ``alpha = exp(-1/tau)``.  Our input gain
  ``c`` is ``1 - alpha`` with ``norm_input=True`` -> ``r = 1``; ``c = 1`` (the default) ->
  ``r = 1 / (1 - alpha)``.  ``tau`` is the same number in both (in steps), ``v_leak = 0``.
- ``nir.IF``: ``dv/dt = r I`` gives ``v[t] = v[t-1] + r I[t]``: ``r = 1``.
- ``nir.CubaLIF``: the synapse ``tau_syn dI/dt = -I + w_in S``: an input ``x[t]`` increments the
  current by ``w_in x[t]`` at the start of step t, which then decays over the step, giving our
  ``i[t] = beta (i[t-1] + x[t])`` with ``beta = exp(-1/tau_syn)`` and ``w_in = 1``.  The membrane is as
  for ``nir.LIF``.  On import the product ``r w_in (1 - alpha)`` must be ``1 - alpha`` (-> ``norm_input``)
  or 1 (-> ``c = 1``) for every neuron.
- Threshold: ``v_threshold`` is our ``threshold``.  NIR spikes when ``v > v_threshold``, we when
  ``v >= threshold`` (they differ only on exact equality).
- Reset: NIR sets ``v = v_reset`` on a spike, which is our ``reset="zero"`` with ``v_reset = 0``.
  Our default ``reset="subtract"`` has no NIR field; it is written to the node's ``metadata``
  (``{"reset": "subtract"}``, with ``spike`` and ``min_v_mem``) and read back from there;
  other tools that ignore the metadata see a reset to zero.  A node without metadata imports with
  ``reset="zero"`` (the NIR semantics).
- Shapes in NIR are per time step and without the batch: a ``(B, T, C, H, W)`` input is
  ``Input(C, H, W)``; neuron parameters are expanded to the full per-step feature shape.

Peer-specific files (``export(..., target=...)``, never the default): some peers' importers do not
follow NIR's continuous-time semantics (docs/interop.md measures how far each one is off).  For two
of them a rewritten file makes the import reproduce our spikes; such a file is no longer the
continuous-time model above, is marked ``metadata["target"]``, and :func:`import_nir` refuses it.

- ``target="snntorch"``: snntorch's importer fixes ``dt = 1e-4`` and builds ``snn.Leaky`` with
  ``beta = 1 - dt / tau`` and the input gain ``r dt / tau`` folded into the threshold
  (``snntorch/import_nir.py``, ``_nir_to_snntorch_module``).  Writing ``tau' = dt / (1 - alpha)``
  gives ``beta = alpha`` and gain ``r (1 - alpha) = c``; ``r`` is kept.
- ``target="norse"``: norse's importer builds ``LIFBoxCell`` (an Euler step ``v += dt / tau (i - v)``,
  ``dt = 1e-3`` by default, ``r`` ignored; ``norse/torch/utils/import_nir.py``, ``from_nir``).  The
  same ``tau' = dt / (1 - alpha)`` gives the decay ``alpha`` and the gain ``1 - alpha``: our
  ``norm_input=True``.
- ``target="sinabs"``: sinabs' importer drops ``nir.Linear`` nodes (it maps only ``nir.Affine``;
  ``sinabs/nir.py``, ``_import_sinabs_module``), so bias-free ``nn.Linear`` layers are written as
  ``nir.Affine`` with a zero bias (the same continuous-time model).  sinabs builds ``LIFSqueeze``
  with input gain 1, multi-spike output and reset by subtraction whatever ``r`` and the node say.

Each target accepts only the layers its peer then reproduces (both Euler peers reset to zero and
emit single spikes; sinabs subtracts and emits multiple spikes) and raises ``ValueError`` naming the
layer otherwise.

Example:
    >>> import torch
    >>> from exodus_lightning import nir as el_nir
    >>> from exodus_lightning.nn import IF, SpikingSequential
    >>> net = SpikingSequential(torch.nn.Linear(3, 2), IF())
    >>> graph = el_nir.export(net, torch.rand(1, 4, 3))
    >>> sorted(graph.nodes)
    ['input', 'output', 'x0_linear', 'x1_if']
    >>> back = el_nir.import_nir(graph)
    >>> x = torch.rand(2, 5, 3)
    >>> bool((back(x) == net(x)).all())
    True
"""

from __future__ import annotations

from typing import Any, Optional

import nir
import numpy as np
import torch
from torch import Tensor, nn

from exodus_lightning.nn.neurons import IF, LIF, LeakyIntegrator, RecurrentLIF
from exodus_lightning.nn.time import SpikingSequential, SumPool2d, TimeDistributed, is_time_aware

_SKIP = (nn.Identity, nn.Dropout)


# ----------------------------------------------------------------------------------- export


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The chain of layers of a (nested) sequential model, in call order."""
    if isinstance(module, nn.Sequential):
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    if isinstance(module, TimeDistributed):
        return [(prefix, module)]
    return [(prefix or "model", module)]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def _full(t: Tensor, features: tuple[int, ...]) -> np.ndarray:
    return _np(t.detach().to(torch.float64).expand(features))


def _r_of(tau: np.ndarray, norm_input: bool) -> np.ndarray:
    if norm_input:
        return np.ones_like(tau)
    # c = 1 = (1 - alpha) r; alpha = 1 (IF, tau = inf) keeps r = 1 (dv/dt = r I).
    one_minus_alpha = -np.expm1(-1.0 / tau)
    with np.errstate(divide="ignore"):
        return np.where(np.isinf(tau), 1.0, 1.0 / one_minus_alpha)


def _neuron_metadata(layer: LIF) -> dict[str, Any]:
    meta: dict[str, Any] = {"reset": layer.reset, "spike": layer.spike}
    if layer.min_v_mem is not None:
        meta["min_v_mem"] = float(layer.min_v_mem)
    return meta


def _export_layer(name: str, layer: nn.Module, features: tuple[int, ...], in_shape: tuple[int, ...]) -> Optional[nir.NIRNode]:
    inner = layer.module if isinstance(layer, TimeDistributed) else layer
    if isinstance(inner, _SKIP):
        return None
    if isinstance(inner, RecurrentLIF):
        raise TypeError(f"layer {name!r}: RecurrentLIF cannot be exported to NIR (only feed-forward chains are supported)")
    if isinstance(inner, nn.Linear):
        if inner.bias is None:
            return nir.Linear(weight=_np(inner.weight))
        return nir.Affine(weight=_np(inner.weight), bias=_np(inner.bias))
    if isinstance(inner, nn.Conv2d):
        if inner.padding_mode != "zeros":
            raise TypeError(f"layer {name!r}: only zero padding exports to NIR, got padding_mode={inner.padding_mode!r}")
        bias = _np(inner.bias) if inner.bias is not None else np.zeros(inner.out_channels)
        return nir.Conv2d(
            input_shape=tuple(int(s) for s in in_shape[-2:]), weight=_np(inner.weight), stride=inner.stride,
            padding=inner.padding, dilation=inner.dilation, groups=inner.groups, bias=bias,
        )
    if isinstance(inner, SumPool2d):
        return nir.SumPool2d(
            kernel_size=np.array(inner.kernel_size), stride=np.array(inner.stride), padding=np.array(inner.padding)
        )
    if isinstance(inner, nn.Flatten):
        start = inner.start_dim - 1 if inner.start_dim > 0 else inner.start_dim
        end = inner.end_dim - 1 if inner.end_dim > 0 else inner.end_dim
        if inner.start_dim == 0:
            raise TypeError(f"layer {name!r}: Flatten(start_dim=0) would flatten the batch; only start_dim >= 1 exports")
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)
    if isinstance(inner, LIF):
        tau = _full(inner.tau_mem, features)
        theta = _full(inner.threshold, features)
        r = _r_of(tau, inner.norm_input)
        zeros = np.zeros(features)
        meta = _neuron_metadata(inner)
        if inner.tau_syn is not None:
            return nir.CubaLIF(
                tau_syn=_full(inner.tau_syn, features), tau_mem=tau, r=r, v_leak=zeros, v_threshold=theta,
                v_reset=zeros.copy(), w_in=1.0, metadata=meta,
            )
        if np.isinf(tau).all():
            return nir.IF(r=r, v_threshold=theta, v_reset=zeros, metadata=meta)
        if np.isinf(tau).any():
            raise TypeError(f"layer {name!r}: a LIF layer mixing tau_mem=inf and finite tau has no NIR node")
        return nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=theta, v_reset=zeros.copy(), metadata=meta)
    if isinstance(inner, LeakyIntegrator):
        tau = _full(inner.tau, features)
        if np.isinf(tau).any():
            raise TypeError(f"layer {name!r}: a LeakyIntegrator with tau=inf has no NIR LI node (use nir.I)")
        return nir.LI(tau=tau, r=_r_of(tau, inner.norm_input), v_leak=np.zeros(features))
    raise TypeError(
        f"layer {name!r} of type {type(inner).__name__} has no NIR export; supported: Linear, Conv2d, "
        "SumPool2d, Flatten, LIF, IF, LeakyIntegrator (Identity/Dropout are skipped)"
    )


# The time step (in the peer's time unit) that a peer's NIR importer simulates with.
_PEER_DT = {
    "snntorch": 1e-4,  # fixed: snntorch/import_nir.py, _nir_to_snntorch_module (dt = 1e-4)
    "norse": 1e-3,  # default of norse.torch.from_nir(..., dt=0.001)
}
EXPORT_TARGETS = ("nir", "snntorch", "norse", "sinabs")


def _peer_error(target: str, name: str, why: str) -> ValueError:
    return ValueError(f"export(target={target!r}): layer {name!r} {why}, which {target}'s NIR importer does not "
                      "reproduce; export with target='nir' (the default) for a file faithful to NIR")


def _rewrite_for_peer(target: str, name: str, layer: nn.Module, node: nir.NIRNode) -> nir.NIRNode:
    """The node that ``target``'s importer turns into a layer with our spikes (module docstring).

    Euler peers (snntorch, norse): ``tau' = dt / (1 - alpha)``, ``alpha = exp(-1/tau)``, so that their
    decay ``1 - dt / tau'`` is ``alpha`` and their gain ``r dt / tau'`` (snntorch) or ``dt / tau'``
    (norse, ``r`` ignored) is our ``c``.  sinabs: ``nir.Linear`` -> ``nir.Affine`` with a zero bias.
    """
    if target == "sinabs":
        if isinstance(node, nir.Linear) and not isinstance(node, nir.Affine):
            return nir.Affine(weight=node.weight, bias=np.zeros(node.weight.shape[0]))
        if isinstance(node, nir.LI):
            raise _peer_error(target, name, "is a LeakyIntegrator (sinabs' ExpLeak needs r = 1 with gain 1)")
        if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            if isinstance(node, nir.CubaLIF):
                raise _peer_error(target, name, "has a synapse (tau_syn; sinabs drops nir.CubaLIF nodes)")
            if layer.reset != "subtract" or layer.spike != "multi":
                raise _peer_error(target, name, f"has reset={layer.reset!r}, spike={layer.spike!r} (sinabs: "
                                  "reset='subtract', spike='multi')")
            if isinstance(node, nir.IF):
                if layer.min_v_mem is None or not np.all(-node.v_threshold == float(layer.min_v_mem)):
                    raise _peer_error(target, name, "is an IF without min_v_mem = -threshold (sinabs' IAF clamps there)")
            elif layer.norm_input or layer.min_v_mem is not None:
                raise _peer_error(target, name, "has norm_input=True or a min_v_mem (sinabs: input gain 1, no clamp)")
        return node
    if isinstance(node, (nir.IF, nir.CubaLIF, nir.LI)):
        kind = {nir.IF: "an IF neuron", nir.CubaLIF: "a synapse (tau_syn)", nir.LI: "a LeakyIntegrator"}[type(node)]
        raise _peer_error(target, name, f"has {kind}")
    if not isinstance(node, nir.LIF):
        return node
    if layer.reset != "zero" or layer.spike != "single" or layer.min_v_mem is not None:
        raise _peer_error(target, name, f"has reset={layer.reset!r}, spike={layer.spike!r}, min_v_mem={layer.min_v_mem!r} "
                          f"({target}: reset='zero', spike='single', no min_v_mem)")
    if target == "norse" and not layer.norm_input:
        raise _peer_error(target, name, "has norm_input=False (norse ignores r: its input gain is 1 - alpha)")
    if target == "snntorch" and (np.unique(node.v_threshold).size > 1
                                 or (layer.norm_input and np.unique(node.tau).size > 1)):
        raise _peer_error(target, name, "has per-neuron thresholds (or per-neuron tau with norm_input=True; snntorch "
                          "folds one gain into one threshold per layer)")
    dt = _PEER_DT[target]
    return nir.LIF(tau=dt / -np.expm1(-1.0 / node.tau), r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                   v_reset=node.v_reset, metadata={**node.metadata, "target": target, "dt": dt})


@torch.no_grad()
def export(model: nn.Module, sample_input: Tensor, target: str = "nir") -> nir.NIRGraph:
    """Export a sequential spiking ``model`` (``SpikingSequential`` / ``nn.Sequential`` of supported
    layers, see the module docstring) to a ``nir.NIRGraph``.

    ``sample_input`` (``(B, T, *features)``) is run through the model once to learn the per-step
    shape every layer sees (conv input sizes, neuron parameter shapes).  Node names are
    ``x{i}_{type}`` in call order, plus ``input`` and ``output``.  Parameters are float64 arrays.

    ``target="nir"`` (the default) writes the continuous-time model of the module docstring.
    ``"snntorch"``, ``"norse"`` or ``"sinabs"`` write a file that this peer's importer turns into our
    spikes (module docstring; for snntorch and norse ``tau' = dt_peer / (1 - exp(-1/tau))``), which
    is not that model and which :func:`import_nir` refuses.  docs/interop.md measures each peer.
    """
    if target not in EXPORT_TARGETS:
        raise ValueError(f"target must be one of {EXPORT_TARGETS}, got {target!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, Tensor) or sample_input.ndim < 3:
        shape = tuple(sample_input.shape) if isinstance(sample_input, Tensor) else type(sample_input).__name__
        raise ValueError(f"sample_input must be a tensor of shape (B, T, *features), got {shape}")
    leaves = _leaves(model)
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def hook_for(i: int, layer: nn.Module):
        def hook(mod, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            # Time-aware layers see (B, T, ...); the others (B*T, ...) inside SpikingSequential.
            skip = 2 if is_time_aware(layer) else 1
            shapes[i] = (tuple(inputs[0].shape[skip:]), tuple(out.shape[skip:]))

        return hook

    handles = [layer.register_forward_hook(hook_for(i, layer)) for i, (_, layer) in enumerate(leaves)]
    was_training = model.training
    try:
        model.eval()
        out = model(sample_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out = out[0] if isinstance(out, tuple) else out

    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(sample_input.shape[2:]))}
    chain = ["input"]
    for i, (name, layer) in enumerate(leaves):
        if i not in shapes:
            raise ValueError(f"layer {name!r} did not run on sample_input; only sequential models can be exported")
        in_shape, out_shape = shapes[i]
        node = _export_layer(name, layer, out_shape, in_shape)
        if node is None:
            continue
        inner = layer.module if isinstance(layer, TimeDistributed) else layer
        if target != "nir":
            node = _rewrite_for_peer(target, name, inner, node)
        key = f"x{i}_{type(inner).__name__.lower()}"
        nodes[key] = node
        chain.append(key)
    nodes["output"] = nir.Output(output_type=np.array(out.shape[2:]))
    chain.append("output")
    edges = list(zip(chain[:-1], chain[1:]))
    metadata: dict[str, Any] = {"source": "exodus_lightning", "dt": 1.0}
    if target != "nir":
        metadata.update(target=target, dt=_PEER_DT.get(target, 1.0))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


# ----------------------------------------------------------------------------------- import


def _meta_value(v: Any) -> Any:
    # Metadata read back from HDF5 arrives as bytes / numpy scalars.
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    return v.decode() if isinstance(v, bytes) else v


def _compact(a: np.ndarray) -> Any:
    """A scalar when all neurons share the value (plain layers), else a float tensor."""
    a = np.asarray(a, dtype=np.float64)
    if a.size and np.all(a == a.flat[0]):
        return float(a.flat[0])
    return torch.tensor(a, dtype=torch.float32)


def _membrane_norm(name: str, r_eff: np.ndarray, tau: np.ndarray) -> bool:
    """``norm_input`` from the effective resistance ``r_eff = r w_in``: our input gain
    c = r_eff (1 - alpha) must be 1 - alpha (norm_input=True, r_eff = 1) or 1 for every neuron; with
    alpha = 1 (tau = inf) the gain is r_eff itself and must be 1."""
    if np.any(np.isnan(tau)) or np.any(tau <= 0):
        raise ValueError(f"NIR node {name!r}: tau must be > 0 everywhere")
    if np.all(np.isinf(tau)):
        if np.allclose(r_eff, 1.0, rtol=1e-6, atol=0):
            return False
        raise ValueError(f"NIR node {name!r}: with tau = inf the input gain r * w_in must be 1 (dt = 1 convention)")
    if np.any(np.isinf(tau)):
        raise ValueError(f"NIR node {name!r}: mixing tau = inf and finite tau in one node is not supported")
    one_minus_alpha = -np.expm1(-1.0 / tau)
    if np.allclose(r_eff, 1.0, rtol=1e-6, atol=0):
        return True
    if np.allclose(r_eff * one_minus_alpha, 1.0, rtol=1e-6, atol=0):
        return False
    raise ValueError(
        f"NIR node {name!r}: r * w_in must be 1 (norm_input=True) or 1 / (1 - exp(-1/tau)) (norm_input=False) "
        "for every neuron (dt = 1 convention, see the module docstring)"
    )


def _neuron_kwargs(name: str, node: nir.NIRNode) -> dict[str, Any]:
    meta = {k: _meta_value(v) for k, v in (node.metadata or {}).items()}
    v_leak = getattr(node, "v_leak", None)
    if v_leak is not None and np.any(np.asarray(v_leak) != 0):
        raise ValueError(f"NIR node {name!r}: v_leak must be 0 (our neurons have no leak potential)")
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise ValueError(f"NIR node {name!r}: v_reset must be 0 (reset to zero or subtract)")
    reset = meta.get("reset", "zero")
    spike = meta.get("spike", "single")
    if isinstance(spike, float) and spike.is_integer():
        spike = int(spike)
    kw: dict[str, Any] = {"reset": reset, "spike": spike}
    if "min_v_mem" in meta:
        kw["min_v_mem"] = float(meta["min_v_mem"])
    return kw


def _import_node(name: str, node: nir.NIRNode) -> Optional[nn.Module]:
    if isinstance(node, (nir.Input, nir.Output)):
        return None
    if isinstance(node, nir.Affine):
        w, b = np.asarray(node.weight), np.asarray(node.bias)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=True)
        layer.weight.data = torch.tensor(w, dtype=torch.float32)
        layer.bias.data = torch.tensor(b, dtype=torch.float32)
        return layer
    if isinstance(node, nir.Linear):
        w = np.asarray(node.weight)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        layer.weight.data = torch.tensor(w, dtype=torch.float32)
        return layer
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
        layer = nn.Conv2d(
            int(w.shape[1]) * int(node.groups), int(w.shape[0]), tuple(w.shape[2:]),
            stride=tuple(int(s) for s in np.atleast_1d(node.stride)), padding=padding,
            dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)), groups=int(node.groups), bias=True,
        )
        layer.weight.data = torch.tensor(w, dtype=torch.float32)
        layer.bias.data = torch.tensor(np.asarray(node.bias), dtype=torch.float32)
        return layer
    if isinstance(node, nir.SumPool2d):
        def pair(a):
            a = np.atleast_1d(np.asarray(a)).astype(int)
            return (int(a[0]), int(a[-1]))

        return SumPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding))
    if isinstance(node, nir.Flatten):
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return nn.Flatten(start, end)
    if isinstance(node, nir.CubaLIF):
        kw = _neuron_kwargs(name, node)
        tau = np.asarray(node.tau_mem, dtype=np.float64)
        norm = _membrane_norm(name, np.asarray(node.r) * np.asarray(node.w_in), tau)
        return LIF(tau_mem=_compact(tau), threshold=_compact(node.v_threshold), tau_syn=_compact(node.tau_syn),
                   norm_input=norm, **kw)
    if isinstance(node, nir.LIF):
        kw = _neuron_kwargs(name, node)
        tau = np.asarray(node.tau, dtype=np.float64)
        norm = _membrane_norm(name, np.asarray(node.r), tau)
        return LIF(tau_mem=_compact(tau), threshold=_compact(node.v_threshold), norm_input=norm, **kw)
    if isinstance(node, nir.IF):
        kw = _neuron_kwargs(name, node)
        if not np.allclose(np.asarray(node.r), 1.0, rtol=1e-6, atol=0):
            raise ValueError(f"NIR node {name!r}: IF needs r = 1 (dv/dt = r I with dt = 1 is v += I)")
        return IF(threshold=_compact(node.v_threshold), **kw)
    if isinstance(node, nir.LI):
        _neuron_kwargs(name, node)  # v_leak check
        tau = np.asarray(node.tau, dtype=np.float64)
        norm = _membrane_norm(name, np.asarray(node.r), tau)
        return LeakyIntegrator(tau=_compact(tau), norm_input=norm)
    raise TypeError(
        f"NIR node {name!r} of type {type(node).__name__} is not supported; supported: Input, Output, Affine, "
        "Linear, Conv2d, SumPool2d, Flatten, LIF, IF, CubaLIF, LI"
    )


def import_nir(graph: nir.NIRGraph) -> SpikingSequential:
    """Build a :class:`~exodus_lightning.nn.SpikingSequential` from a sequential ``nir.NIRGraph``
    (one ``Input``, a chain of supported nodes, one ``Output``), with the mapping of the module
    docstring.  Also accepts a path to a NIR file (read with ``nir.read``)."""
    if isinstance(graph, str):
        graph = nir.read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a path to a NIR file, got {type(graph).__name__}")
    target = _meta_value((graph.metadata or {}).get("target", "nir"))
    if target != "nir":
        raise ValueError(f"graph was exported with target={target!r} for that peer's importer, not NIR's semantics; "
                         "import a file exported with target='nir'")
    succ: dict[str, str] = {}
    pred: dict[str, str] = {}
    for a, b in graph.edges:
        if a in succ or b in pred:
            raise ValueError(f"NIR graph is not a chain (node {a!r} or {b!r} branches); only sequential graphs import")
        succ[a], pred[b] = b, a
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"NIR graph must have exactly one Input node, found {len(inputs)}: {inputs}")
    order, key = [], inputs[0]
    while key is not None:
        if key in order:
            raise ValueError(f"NIR graph has a cycle through node {key!r}; only feed-forward chains import")
        order.append(key)
        key = succ.get(key)
    if len(order) != len(graph.nodes):
        missing = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"NIR graph nodes {missing} are not on the chain from the Input node")
    layers = [m for k in order if (m := _import_node(k, graph.nodes[k])) is not None]
    return SpikingSequential(*layers)


from_nir = import_nir
to_nir = export

__all__ = ["EXPORT_TARGETS", "export", "import_nir", "from_nir", "to_nir"]
