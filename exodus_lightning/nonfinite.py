"""NaN and Inf in training: found in the step where they first appear, named by layer and step,
handled by a policy — without a host synchronisation per layer.

How (one mechanism for the whole package):

- **Flags on the device.**  While a layer runs, its neuron op ORs a 1 into the layer's flag (an
  int32 on the data's device) when the layer's input holds a NaN or Inf: the native LIF scan finds
  it while it reads ``x`` anyway (``probe += x - x``, ``exodus_lif_forward_args.nonfinite``, CPU and
  CUDA); ops without that flag (leaky integrator, BPTT loop, sparse, event and OTTT layers) use a
  device-side ``torch.isfinite``.  Nothing waits for the device.
- **One check per optimizer step.**  :class:`NonFiniteMonitor` gives every watched layer its slot
  (plus the loss and the gradients) and reads all flags at once before the optimizer step: one
  host synchronisation per step, the only one.  Only when a flag is set is the batch itself
  tested, to say whether the value came with the data.
- **A policy.**  ``"raise"`` (default): :class:`NonFiniteError` naming the step, and every place the
  value was seen in the order it spread (the batch, the input of each layer by its name, the loss,
  the gradients); ``"skip"``: the same text as a warning, and the step is skipped (the gradients
  are dropped, so the optimizer leaves weights and its state untouched; the batch's logged loss
  shows the NaN); ``"off"``: no hooks, no flags, no cost.

The LightningModules of :mod:`exodus_lightning.models` take it as ``nonfinite=`` (CLI:
``--model.init_args.nonfinite skip``) through :class:`NonFiniteCheck`.  Outside Lightning,
:func:`set_check_finite` makes every neuron op call raise a ``ValueError`` on a non-finite input
right away (one synchronisation per call).

Example:
    >>> import math, torch
    >>> from exodus_lightning import LIFParameters
    >>> from exodus_lightning.functional import lif
    >>> flag = torch.zeros(1, dtype=torch.int32)
    >>> with recording_nonfinite(flag):
    ...     _ = lif(torch.tensor([[[0.5], [math.nan]]]), LIFParameters(tau_mem=10.0))
    >>> flag.item()
    1
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

POLICIES = ("raise", "skip", "off")

_state = threading.local()
_check_every_call = False


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared in training; the message names the step and where it was seen."""


def validate_policy(policy: str, argument: str = "nonfinite") -> str:
    if policy not in POLICIES:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, POLICIES))}, got {policy!r}")
    return policy


# ------------------------------------------------------------------ the ops' side


class _Slot:
    __slots__ = ("flag", "used")

    def __init__(self, flag: Tensor) -> None:
        self.flag, self.used = flag, False


@contextlib.contextmanager
def recording_nonfinite(flag: Tensor) -> Iterator[_Slot]:
    """Inside, every neuron op ORs a 1 into ``flag`` (int32, one element, on the data's device) when
    its input holds a NaN or Inf, without a host synchronisation; ``slot.used`` says whether an op
    recorded (one that did not leaves its layer to the caller's own check)."""
    previous = getattr(_state, "slot", None)
    slot = _Slot(flag)
    _state.slot = slot
    try:
        yield slot
    finally:
        _state.slot = previous


def set_check_finite(enabled: bool) -> None:
    """Outside a monitored training step, make every neuron op call (``lif``, ``leaky_integrator``)
    raise ``ValueError("x contains NaN or Inf values")`` on a non-finite input (one host
    synchronisation per call).  In Lightning training use the models' ``nonfinite`` policy."""
    global _check_every_call
    _check_every_call = bool(enabled)


def check_wanted() -> bool:
    """Whether the op being called should look for non-finite input (a layer is being watched, or
    :func:`set_check_finite` is on)."""
    return (getattr(_state, "slot", None) is not None or _check_every_call) and not torch.compiler.is_compiling()


def record_nonfinite(x: Tensor, flag: Optional[Tensor] = None, name: str = "x") -> None:
    """Called by an op after reading ``x``: ``flag`` is its kernel's int32 result (1: non-finite
    seen), or None to test ``x`` here on the device.  Into the watched layer's slot, else (with
    :func:`set_check_finite`) a ValueError now."""
    if not check_wanted():
        return
    if flag is None:
        flag = (~torch.isfinite(x)).any().to(torch.int32)
    slot = getattr(_state, "slot", None)
    if slot is not None:
        slot.flag.bitwise_or_(flag.to(slot.flag.device).reshape(slot.flag.shape))
        slot.used = True
    elif bool(flag.any()):
        raise ValueError(f"{name} contains NaN or Inf values")


# ------------------------------------------------------------------ the watched layers


def watched_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers whose input is checked, by module path: the neuron layers of
    :mod:`exodus_lightning.nn` (LIF and its subclasses, LeakyIntegrator) and those of the training
    algorithms (SparseLinearLIF and its readout, the event-driven weight layers, OTTT's OnlineLIF)."""
    from exodus_lightning.algorithms.event_driven import EventConv2d, EventLinear
    from exodus_lightning.algorithms.ottt import OnlineLIF
    from exodus_lightning.algorithms.sparse_sgd import DelayedLeakyReadout, SparseLinearLIF
    from exodus_lightning.nn.neurons import LIF, LeakyIntegrator

    kinds = (LIF, LeakyIntegrator, SparseLinearLIF, DelayedLeakyReadout, EventLinear, EventConv2d, OnlineLIF)
    return {path: m for path, m in model.named_modules() if isinstance(m, kinds)}


def _first_tensor(value: Any) -> Optional[Tensor]:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    return None


class NonFiniteMonitor:
    """Device flags for the input of every watched layer of ``model`` (:func:`watched_layers`), the
    loss and the gradients, read together by :meth:`check`; the batch is tested when one is set.

    Layers get their slot in the order they first run, so the flags read in the order a value
    spreads through the network.  Hooks record only between :meth:`start` and :meth:`stop`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = watched_layers(model)
        self._order: dict[str, int] = {}
        self._flags: Optional[Tensor] = None
        self._views: dict[int, Tensor] = {}
        self._open: list[tuple[Any, _Slot, Optional[Tensor]]] = []
        self.active = False
        self._batch: Any = None
        self._handles = []
        for path, layer in self.layers.items():
            self._handles.append(layer.register_forward_pre_hook(self._enter(path)))
            self._handles.append(layer.register_forward_hook(self._leave, always_call=True))

    # slots: 0 .. L-1 the layers in the order they first run, L the loss, L + 1 the gradients
    @property
    def _loss_slot(self) -> int:
        return len(self.layers)

    @property
    def _gradient_slot(self) -> int:
        return len(self.layers) + 1

    def _slot(self, index: int) -> Tensor:
        view = self._views.get(index)
        if view is None:
            view = self._views[index] = self._flags[index:index + 1]
        return view

    def start(self, device: torch.device, batch: Any = None) -> None:
        """Record from now on (the flags are on ``device``).  The batch is kept: its own tensors are
        tested only when a flag is set (the first layer's flag sees a bad value of the batch anyway)."""
        if self._flags is None or self._flags.device != device:
            self._flags = torch.zeros(len(self.layers) + 2, dtype=torch.int32, device=device)
            self._views = {}
        self.active = True
        self._batch = batch

    def stop(self) -> None:
        self.active = False
        self._batch = None

    def _batch_is_finite(self) -> bool:
        batch = self._batch if isinstance(self._batch, (tuple, list)) else [self._batch]
        return all(bool(torch.isfinite(t).all()) for t in batch if isinstance(t, Tensor) and t.is_floating_point())

    def _enter(self, path: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if not self.active:
                return
            index = self._order.setdefault(path, len(self._order))
            context = recording_nonfinite(self._slot(index))
            self._open.append((context, context.__enter__(), _first_tensor(args)))

        return hook

    def _leave(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._open:
            return
        context, slot, x = self._open.pop()
        if not slot.used and x is not None and x.is_floating_point():
            # the layer's op has no flag of its own: test its input on the device
            slot.flag.bitwise_or_((~torch.isfinite(x)).any().to(torch.int32))
        context.__exit__(None, None, None)

    def record_loss(self, loss: Tensor) -> None:
        if self.active and self._flags is not None:
            self._slot(self._loss_slot).bitwise_or_((~torch.isfinite(loss.detach())).any().to(torch.int32))

    def record_gradients(self, parameters) -> None:
        grads = [p.grad for p in parameters if p.grad is not None]
        if self.active and self._flags is not None and grads:
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            self._slot(self._gradient_slot).bitwise_or_((~finite).to(torch.int32))

    def check(self) -> list[str]:
        """Where a NaN or Inf was seen since the last check, in the order it spread (empty: none);
        clears the flags.  The one host synchronisation of a step."""
        if self._flags is None:
            return []
        values = self._flags.tolist()
        self._flags.zero_()
        if not any(values):
            return []
        from exodus_lightning.nn.names import layer_name

        seen = [] if self._batch_is_finite() else ["the batch"]
        for path, index in sorted(self._order.items(), key=lambda item: item[1]):
            if values[index]:
                seen.append(f"the input of layer '{layer_name(self.model, path)}' (module {path})")
        if values[self._loss_slot]:
            seen.append("the loss")
        if values[self._gradient_slot]:
            seen.append("the gradients")
        return seen

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.active = False


# ------------------------------------------------------------------ LightningModule hooks


class NonFiniteCheck:
    """LightningModule hooks applying the ``nonfinite`` policy (module docstring) in training; mixed
    into :class:`~exodus_lightning.models.SpikingClassifier`,
    :class:`~exodus_lightning.models.OnlineSpikingClassifier` and
    :class:`~exodus_lightning.models.SpikeTrainRegressor`, which set ``self.nonfinite``.  A subclass
    that overrides one of these hooks calls ``super()``."""

    nonfinite: str = "raise"
    _nonfinite_monitor: Optional[NonFiniteMonitor] = None
    _nonfinite_batch: int = 0

    def on_fit_start(self) -> None:
        if self._nonfinite_monitor is not None:
            self._nonfinite_monitor.remove()
            self._nonfinite_monitor = None
        if validate_policy(self.nonfinite) != "off":
            self._nonfinite_monitor = NonFiniteMonitor(self)

    def on_fit_end(self) -> None:
        if self._nonfinite_monitor is not None:
            self._nonfinite_monitor.remove()
            self._nonfinite_monitor = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._nonfinite_monitor is not None:
            self._nonfinite_batch = batch_idx
            self._nonfinite_monitor.start(self.device, batch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._nonfinite_monitor is not None:
            self._nonfinite_monitor.stop()

    def on_before_backward(self, loss: Tensor) -> None:
        if self._nonfinite_monitor is not None:
            self._nonfinite_monitor.record_loss(loss)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        monitor = self._nonfinite_monitor
        if monitor is None:
            return
        trainer = self.trainer
        # With a GradScaler (16-mixed) an Inf gradient is the scaler's business: it skips the step.
        if getattr(trainer.precision_plugin, "scaler", None) is None:
            monitor.record_gradients(p for group in optimizer.param_groups for p in group["params"])
        seen = monitor.check()
        bad = bool(seen)
        if trainer.world_size > 1:  # every rank takes the same decision (a rank that raises alone hangs the others)
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        where = ", ".join(seen) if seen else "another rank (see its message)"
        message = (f"NaN or Inf in training step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
                   f"{self._nonfinite_batch}), seen in {where}")
        if self.nonfinite == "raise":
            monitor.stop()
            raise NonFiniteError(message + ". Skip such batches with nonfinite='skip' "
                                 "(CLI: --model.init_args.nonfinite skip), or turn the check off with 'off'.")
        warnings.warn(message + "; the step is skipped (no parameter update).", RuntimeWarning, stacklevel=2)
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # torch optimizers leave parameters without a gradient untouched


__all__ = ["POLICIES", "NonFiniteError", "NonFiniteMonitor", "NonFiniteCheck", "recording_nonfinite",
           "record_nonfinite", "set_check_finite", "check_wanted", "watched_layers", "validate_policy"]
