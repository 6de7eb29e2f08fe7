"""Where a step's time goes: the self CPU time of the profiler's ops by category (GEMMs, the LIF and
leaky scans forward and backward, allocation, the optimiser), per step, with the page faults and
system time per step (freshly mapped memory: see :mod:`exodus_lightning._allocator`).

Used by ``exodus-lightning bench layer --breakdown`` (one Linear + LIF layer) and
``exodus-lightning bench step`` (one training step of a shipped config, e.g. the quickstart).
"""

from __future__ import annotations

import resource
import time
from typing import Callable

import torch

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (  # (category, op names they start with)
    ("GEMMs (Linear forward and backward)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul")),
    ("LIF forward (exodus::lif_forward)", ("exodus::lif_forward",)),
    ("LIF backward (exodus::lif_backward)", ("exodus::lif_backward",)),
    ("leaky readout (exodus::leaky_*)", ("exodus::leaky_forward", "exodus::leaky_backward")),
    ("allocation (aten::empty*, zeros)", ("aten::empty", "aten::zero_", "aten::zeros", "aten::fill_")),
    ("optimiser kernels (Adam/SGD updates)", ("aten::_fused_adam", "aten::_foreach_", "aten::_fused_sgd")),
)


class StepProfile:
    """Context manager: ``torch.profiler`` and the process's resource usage over the steps run inside;
    :meth:`report` gives, per step, each category's self CPU time and share, the rest ("other ops":
    autograd, the loss, copies, Lightning's hooks), the page faults and the system time."""

    def __enter__(self) -> "StepProfile":
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self._prof = profile(activities=activities)
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._prof.__exit__(*exc)
        self._wall = time.perf_counter() - self._t0
        self._r1 = resource.getrusage(resource.RUSAGE_SELF)

    def report(self, steps: int) -> list[str]:
        self_us: dict[str, float] = {}
        for ev in self._prof.key_averages():
            self_us[ev.key] = self_us.get(ev.key, 0.0) + ev.self_cpu_time_total
        total = sum(self_us.values())
        rest = total
        lines = []
        for name, prefixes in CATEGORIES:
            us = sum(v for k, v in self_us.items() if k.startswith(prefixes))
            rest -= us
            lines.append(f"  {name:<40} {us / steps / 1e3:9.2f} ms  {us / max(total, 1e-9):6.1%}")
        lines.append(f"  {'other ops (autograd, loss, copies, hooks)':<40} {rest / steps / 1e3:9.2f} ms  "
                     f"{rest / max(total, 1e-9):6.1%}")
        lines.append(f"  page faults per step: {(self._r1.ru_minflt - self._r0.ru_minflt) / steps:.0f}, system time "
                     f"per step {(self._r1.ru_stime - self._r0.ru_stime) / steps * 1e3:.2f} ms (of "
                     f"{self._wall / steps * 1e3:.2f} ms wall, profiler on)")
        return lines


def profile_steps(step: Callable[[], None], steps: int) -> list[str]:
    """Run ``step`` ``steps`` times under a :class:`StepProfile` and return its report's lines."""
    with StepProfile() as p:
        for _ in range(steps):
            step()
    return p.report(steps)


__all__ = ["CATEGORIES", "StepProfile", "profile_steps"]
