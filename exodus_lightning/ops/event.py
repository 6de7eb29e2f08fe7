"""Custom ops of event-driven backpropagation (Zhu et al. 2022): ``exodus_event::srm_forward`` and
``exodus_event::srm_backward``, backed by native libraries with one plain C ABI
(``native/include/exodus/event_api.h``), called through the registry of
:mod:`exodus_lightning._native`: the CPU library for CPU tensors and the CUDA library for CUDA
tensors (loaded lazily, the first time a CUDA tensor arrives; the kernels run on the tensor's own
device and on its current stream).

The ops take ``(B, T, N)`` tensors of any strides (handed to the kernels contiguous): float32/float64
on the CPU, and also float16/bfloat16 (with float32 state and arithmetic) on CUDA:

- :func:`srm_forward` — the SRM neuron of suppl. S14–S16 as a two-trace recurrence (see
  :mod:`exodus_lightning.algorithms.event_driven`), returning spikes, the discrete ``du/dt`` and the
  gradient trace ``g`` (the normaliser ``g(t_k)`` of S20 at spike times).
- :func:`srm_backward` — the per-neuron reverse scan of S11/S20/S21 returning the weight-path error
  ``e_w`` and the input-path error ``e_in``; the layer forms ``dL/dW = sum_t e_w^T s_in`` and
  ``dL/ds_in = (W^T e_in) * [s_in != 0]``.

The per-neuron arithmetic is shared by the CPU and the CUDA drivers (``event_neuron.h``); the CUDA
drivers compiled for the host (the emulation library) let the tests run the GPU code path on a CPU:
route the CPU calls there by replacing :func:`for_device` (see ``tests/test_event_cuda.py``).
A missing library raises :class:`exodus_lightning._native.NativeLibraryError` saying how to get it.
"""

from __future__ import annotations


import torch
from torch import Tensor

from exodus_lightning import _native
from exodus_lightning._native import SRMBackwardArgs, SRMForwardArgs
from exodus_lightning.ops._common import float32_under_autocast
# The ops look for_device up in this module at each call: the tests replace it to route CPU tensors
# to emulation_library, the CUDA drivers compiled for the host.
from exodus_lightning._native import cpu as library, cuda as cuda_library, emulation as emulation_library, for_device


@torch.library.custom_op("exodus_event::srm_forward", mutates_args=())
def srm_forward(current: Tensor, decay_m: float, decay_s: float, decay_g: float, kappa: float, theta: float,
                return_u: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SRM forward scan on ``current`` ``(B, T, N)``: returns (spikes, du, g trace, u or empty), on
    ``current``'s device and in its dtype."""
    if current.ndim != 3:
        raise ValueError(f"current must have shape (B, T, N), got {tuple(current.shape)}")
    tag = _native.dtype_tag(current, "current")
    B, T, N = current.shape
    spikes, du, dug = (current.new_empty((B, T, N)) for _ in range(3))
    u = current.new_empty((B, T, N)) if return_u else current.new_empty((0,))
    lib = for_device(current.device.type)
    device, stream = _native.device_and_stream(current)
    lib.call("event_srm_forward", B=B, T=T, N=N, dtype=tag, current=current, decay_m=decay_m, decay_s=decay_s,
             decay_g=decay_g, kappa=kappa, theta=theta, spikes=spikes, du=du, dug=dug, u=u, device=device,
             stream=stream)
    return spikes, du, dug, u


@srm_forward.register_fake
def _(current, decay_m, decay_s, decay_g, kappa, theta, return_u):
    u = torch.empty_like(current) if return_u else current.new_empty((0,))
    return torch.empty_like(current), torch.empty_like(current), torch.empty_like(current), u


# on CUDA too: an event layer's next layer takes float32 or float64 spikes
float32_under_autocast("exodus_event::srm_forward", ("cpu", "cuda"))


@torch.library.custom_op("exodus_event::srm_backward", mutates_args=())
def srm_backward(grad_spikes: Tensor, spikes: Tensor, du: Tensor, dug: Tensor, decay_m: float, decay_s: float,
                 decay_g: float, kappa: float, max_dudt_inv: float) -> tuple[Tensor, Tensor]:
    """Reverse scan per neuron (S11, S20, S21): returns ``(e_w, e_in)``, each ``(B, T, N)``.
    ``max_dudt_inv <= 0`` disables the clipping of ``-1/(du/dt)``. All inputs must be on one device."""
    for name, t in (("grad_spikes", grad_spikes), ("du", du), ("dug", dug)):
        if t.shape != spikes.shape:
            raise ValueError(f"{name} must have the shape of spikes {tuple(spikes.shape)}, got {tuple(t.shape)}")
        if t.device != spikes.device:
            raise ValueError(f"{name} is on {t.device} but spikes is on {spikes.device}")
    if spikes.ndim != 3:
        raise ValueError(f"spikes must have shape (B, T, N), got {tuple(spikes.shape)}")
    tag = _native.dtype_tag(spikes, "spikes")
    B, T, N = spikes.shape
    grad_spikes, du, dug = (t.to(spikes.dtype) for t in (grad_spikes, du, dug))
    e_w, e_in = spikes.new_empty((B, T, N)), spikes.new_empty((B, T, N))
    lib = for_device(spikes.device.type)
    device, stream = _native.device_and_stream(spikes)
    lib.call("event_srm_backward", B=B, T=T, N=N, dtype=tag, grad_spikes=grad_spikes, spikes=spikes, du=du, dug=dug,
             decay_m=decay_m, decay_s=decay_s, decay_g=decay_g, kappa=kappa, max_dudt_inv=max_dudt_inv, e_w=e_w,
             e_in=e_in, device=device, stream=stream)
    return e_w, e_in


@srm_backward.register_fake
def _(grad_spikes, spikes, du, dug, decay_m, decay_s, decay_g, kappa, max_dudt_inv):
    return torch.empty_like(spikes), torch.empty_like(spikes)


__all__ = ["srm_forward", "srm_backward", "library", "cuda_library", "emulation_library", "for_device",
           "SRMForwardArgs", "SRMBackwardArgs"]
