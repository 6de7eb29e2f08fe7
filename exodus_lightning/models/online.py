"""``OnlineSpikingClassifier``: online training through time (OTTT_A / OTTT_O, Xiao et al. 2022)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Union

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from exodus_lightning.algorithms.ottt import (
    GAMMA_HEAVISIDE,
    OnlineSequential,
    SigmoidSurrogate,
    build_online_network,
)
from exodus_lightning.neuron_parameters import check_time_constant
from exodus_lightning.models.task import SpikingTask, check_num_classes
from exodus_lightning.nn.monitoring import FiringRates
from exodus_lightning.spec import instantiate, save_hyperparameters_as_specs
from exodus_lightning.time_constants import Decay, check_decay, min_tau

ALGORITHMS = ("ottt_a", "ottt_o")


def step_loss(o_t: Tensor, y: Tensor, t: int, T: int, alpha: float, lengths: Optional[Tensor] = None) -> Tensor:
    r"""Instantaneous loss of step ``t`` (suppl. C.2.2): ``[(1-alpha) CE(o[t], y) + alpha MSE(o[t],
    onehot(y))] / T`` averaged over the batch, the MSE over the ``C`` classes; with ``lengths``, a
    sample contributes only while ``t < lengths[b]`` and is divided by its own length.  Summed over
    ``t`` it equals :func:`exodus_lightning.losses.ce_mse_mix` of the stacked outputs."""
    ce = F.cross_entropy(o_t, y, reduction="none")
    mse = (o_t - F.one_hot(y, o_t.shape[-1]).to(o_t.dtype)).square().mean(1)
    per_sample = (1.0 - alpha) * ce + alpha * mse
    if lengths is None:
        return per_sample.mean() / T
    lengths = lengths.to(o_t.device)
    w = (t < lengths).to(o_t.dtype) / lengths.to(o_t.dtype)
    return (per_sample * w).mean()


class OnlineSpikingClassifier(SpikingTask):
    r"""Trains a spiking classifier with OTTT (Xiao et al., NeurIPS 2022, §4, suppl. Algorithm 1),
    one time step at a time with Lightning's manual optimisation:

    - ``algorithm="ottt_a"``: at every step ``t`` forward, instantaneous loss ``L[t]``, backward
      (gradients ``g_u[t] a_hat[t]^T`` accumulate over the T steps); one optimiser step per batch.
      Under DDP the first T-1 backward passes run without gradient all-reduce
      (``strategy.block_backward_sync()``, DDP's ``no_sync``); the last one syncs the sum.
    - ``algorithm="ottt_o"``: ``zero_grad``, backward and optimiser step at every time step
      (T updates per batch; ``trainer.global_step`` counts them).  Neuron states and traces carry
      over across the updates, so step t+1 runs with the weights of step t.

    The loss is :func:`step_loss` ``[(1-a) CE(o[t], y) + a MSE(o[t], onehot(y))] / T`` on the
    stateless readout ``o[t]``; prediction ``argmax_c sum_t o[t]`` (suppl. C.2.2).  Memory does not
    depend on T: each step's graph is freed by its backward and only membrane and trace survive.

    Args:
        network: an :class:`~exodus_lightning.algorithms.ottt.OnlineSequential` (one step
            ``(B, *input) -> (B, num_classes)``), or an architecture string for
            :func:`~exodus_lightning.algorithms.ottt.build_online_network` built with the
            arguments below (``tau_mem``, ``decay``, ``threshold``, ``surrogate_alpha``, ``sws``,
            ``readout_trace``, ``input_trace``).
        num_classes: number of classes.
        algorithm: ``"ottt_a"`` or ``"ottt_o"``.
        tau_mem: membrane time constant in steps (the paper's tau = 2; ``inf``: IF neurons).
        decay: ``"euler"`` (``lambda = 1 - 1/tau``, the official code: tau = 2 is lambda = 0.5) or
            ``"exp"`` (:mod:`exodus_lightning.time_constants`).
        loss_alpha: the MSE weight ``a`` in [0, 1] (0.05 CIFAR, 0.001 DVS data, 0 pure CE).
        threshold: firing threshold > 0 (paper: 1).
        surrogate_alpha: slope of the sigmoid surrogate (paper: 4).
        sws: scaled weight standardisation in the hidden layers (VGG-sWS).
        readout_trace: readout weight gradient from the trace (official code, default) or the spikes.
        input_trace: first layer gradient from the input trace (paper Thm 2) or the raw input (code).
        optimizer: optimizer factory (LightningCLI ``class_path``); None: Adam(lr=1e-3).
        scheduler: optional LR scheduler factory, stepped once per epoch (ReduceLROnPlateau: with
            ``val/loss``).
        nonfinite: what a NaN or Inf in training does (:mod:`exodus_lightning.nonfinite`): ``"raise"``
            (default) a ``NonFiniteError`` naming the step and the first layer whose input held it
            (checked before every optimizer step: once per batch with ottt_a, T times with ottt_o);
            ``"skip"`` a warning and no parameter update for that step; ``"off"`` no check.

    Batches are ``(x, y)`` or ``(x, y, lengths)`` with ``x`` of shape ``(B, T, *input)``.

    Example:
        >>> import torch
        >>> from exodus_lightning.models.online import OnlineSpikingClassifier
        >>> model = OnlineSpikingClassifier("20-32l-4l", num_classes=4, algorithm="ottt_o")
        >>> model(torch.rand(2, 6, 20)).shape                 # (B, T, num_classes)
        torch.Size([2, 6, 4])
    """

    def __init__(
        self,
        network: Union[nn.Module, str],
        num_classes: int,
        algorithm: str = "ottt_a",
        tau_mem: float = 2.0,
        decay: Decay = "euler",
        loss_alpha: float = 0.05,
        threshold: float = 1.0,
        surrogate_alpha: float = 4.0,
        sws: bool = False,
        readout_trace: bool = True,
        input_trace: bool = False,
        optimizer: Optional[OptimizerCallable] = None,
        scheduler: Optional[LRSchedulerCallable] = None,
        nonfinite: str = "raise",
    ) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, nonfinite=nonfinite)
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        check_num_classes(num_classes)
        if isinstance(loss_alpha, bool) or not isinstance(loss_alpha, (int, float)) or not 0.0 <= loss_alpha <= 1.0:
            raise ValueError(f"loss_alpha must be a number in [0, 1], got {loss_alpha!r}")
        check_time_constant(tau_mem, "tau_mem", allow_inf=True, low=min_tau(check_decay(decay)))
        save_hyperparameters_as_specs(self, drop_undescribable=["network"])  # see SpikingClassifier
        # Manual optimisation: one backward per time step (OTTT_A) or one update per step (OTTT_O).
        self.automatic_optimization = False
        self.algorithm = algorithm
        self.num_classes = num_classes
        self.loss_alpha = float(loss_alpha)
        self.network = self.build_network(instantiate(network), tau_mem, decay, threshold, surrogate_alpha, sws,
                                          readout_trace, input_trace)
        self.build_metrics(num_classes)

    # ------------------------------------------------------------------ construction

    def build_network(self, network: Union[nn.Module, str], tau_mem: float, decay: Decay, threshold: float,
                      surrogate_alpha: float, sws: bool, readout_trace: bool, input_trace: bool) -> OnlineSequential:
        if isinstance(network, OnlineSequential):
            return network
        if isinstance(network, str):
            return build_online_network(
                network, tau_mem=tau_mem, threshold=threshold, surrogate=SigmoidSurrogate(surrogate_alpha),
                decay=decay, sws=sws,
                gamma=GAMMA_HEAVISIDE, readout_trace=readout_trace, input_trace=input_trace,
            )
        raise ValueError("network must be an OnlineSequential (exodus_lightning.algorithms.ottt) or an architecture "
                         f"string, got {type(network).__name__}")

    # ------------------------------------------------------------------ stepping

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim < 3 or x.shape[1] < 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, T, *input) with T >= 1, got {shape}")

    def steps(self, x: Tensor) -> Iterator[tuple[int, Tensor]]:
        """Reset the network's state and yield ``(t, o[t])`` for ``t = 0 .. T-1``; each ``o[t]``
        carries the graph of its own step only."""
        self._check_x(x)
        self.network.reset_state()
        for t in range(x.shape[1]):
            o_t = self.network(x[:, t])
            if o_t.ndim != 2 or o_t.shape[-1] != self.num_classes:
                raise ValueError(f"the network must map one step to (B, num_classes={self.num_classes}), "
                                 f"got {tuple(o_t.shape)}")
            yield t, o_t

    def forward(self, x: Tensor) -> Tensor:
        """Readout ``o`` of shape ``(B, T, num_classes)`` for ``x`` ``(B, T, *input)``.  With
        gradients enabled the graphs of all steps are kept (the steps' graphs are disjoint, so a
        loss on the stacked output has OTTT_A's gradients, but memory then grows with T)."""
        return torch.stack([o_t for _, o_t in self.steps(x)], 1)

    def _n_steps(self, x: Tensor, lengths: Optional[Tensor]) -> int:
        # Steps past the longest sample carry no loss: skipping them also avoids empty OTTT_O updates.
        return x.shape[1] if lengths is None else int(lengths.max())

    def accumulate_gradients(self, x: Tensor, y: Tensor, lengths: Optional[Tensor] = None,
                             optimizer: Any = None) -> tuple[Tensor, Tensor]:
        """Run one sequence with a backward pass per step (suppl. Algorithm 1).  Without
        ``optimizer`` the gradients of all steps accumulate in ``.grad`` (OTTT_A; the caller zeroes
        and steps); with one, ``zero_grad``/``step`` run at every step (OTTT_O).  Returns the class
        scores ``sum_t o[t]`` ``(B, C)`` and the total loss (detached)."""
        T = x.shape[1]
        n = self._n_steps(x, lengths)
        scores = torch.zeros(x.shape[0], self.num_classes, device=x.device, dtype=x.dtype)
        total = torch.zeros((), device=x.device, dtype=x.dtype)
        attached = self._trainer is not None
        for t, o_t in self.steps(x[:, :n]):
            loss = step_loss(o_t, y, t, T, self.loss_alpha, lengths)
            if optimizer is not None:
                optimizer.zero_grad()
            # OTTT_A: no all-reduce until the last step; the last backward syncs the accumulated sum.
            sync = optimizer is not None or t == n - 1
            with contextlib.nullcontext() if sync else self._no_sync():
                if attached:
                    self.manual_backward(loss)
                else:
                    loss.backward()
            if optimizer is not None:
                optimizer.step()
            o_d = o_t.detach()
            if lengths is not None:
                o_d = o_d * (t < lengths.to(o_d.device)).to(o_d.dtype)[:, None]
            scores = scores + o_d
            total = total + loss.detach()
        return scores, total

    def _no_sync(self) -> Any:
        strategy = getattr(self._trainer, "strategy", None) if self._trainer is not None else None
        block = getattr(strategy, "block_backward_sync", None)  # ParallelStrategy (DDP) only
        return block() if callable(block) else contextlib.nullcontext()

    def _log_stage(self, stage: str, loss: Tensor, scores: Tensor, y: Tensor, rates: FiringRates) -> None:
        metric = getattr(self, f"{stage}_accuracy")
        metric(scores, y)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=len(y),
                 sync_dist=True)
        self.log(f"{stage}/accuracy", metric, on_step=False, on_epoch=True, prog_bar=True)
        for name, rate in rates.layer_rates().items():
            self.log(f"{stage}/firing_rate/{name}", rate, on_step=False, on_epoch=True, batch_size=len(y),
                     sync_dist=True)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y, lengths = self.unpack(batch)
        self._check_x(x)
        opt = self.optimizers()
        with FiringRates(self.network) as rates:
            if self.algorithm == "ottt_a":
                opt.zero_grad()
                scores, loss = self.accumulate_gradients(x, y, lengths)
                opt.step()
            else:
                scores, loss = self.accumulate_gradients(x, y, lengths, optimizer=opt)
        self._log_stage("train", loss, scores, y, rates)
        return loss

    def _eval_step(self, batch: Any, stage: str) -> Tensor:
        x, y, lengths = self.unpack(batch)
        with FiringRates(self.network) as rates:
            out = self(x)
        from exodus_lightning.losses import ce_mse_mix, sum_over_time

        loss = ce_mse_mix(out, y, self.loss_alpha, lengths)
        self._log_stage(stage, loss, sum_over_time(out, lengths), y, rates)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def predictions(self, output: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """Class scores ``sum_t o[t]`` ``(B, num_classes)``."""
        from exodus_lightning.losses import sum_over_time

        return sum_over_time(output, lengths)

    def on_train_epoch_end(self) -> None:
        # Manual optimisation: Lightning does not step schedulers; once per epoch, as the paper's cosine.
        sch = self.lr_schedulers()
        if sch is None:
            return
        if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = self.trainer.callback_metrics.get("val/loss")
            if metric is not None:
                sch.step(metric)
        else:
            sch.step()
