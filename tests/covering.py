"""Pairwise covering arrays: every pair of values of every two factors appears in at least one
configuration, in a few dozen configurations instead of the full product (thousands)."""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Optional


def pairwise(
    factors: dict[str, list[Any]],
    valid: Optional[Callable[[dict[str, Any]], bool]] = None,
    seed: int = 0,
    candidates: int = 60,
) -> list[dict[str, Any]]:
    """Greedy pairwise covering (AETG-style), deterministic for a seed.

    ``valid(config)`` rejects impossible combinations; pairs that no valid configuration can hold
    are not required."""
    names = list(factors)
    valid = valid or (lambda c: True)
    rng = random.Random(seed)
    all_configs = [dict(zip(names, vals)) for vals in itertools.product(*(factors[n] for n in names))]
    all_configs = [c for c in all_configs if valid(c)]

    def pairs_of(cfg: dict[str, Any]) -> set:
        return {
            (a, repr(cfg[a]), b, repr(cfg[b])) for a, b in itertools.combinations(names, 2)
        }

    uncovered: set = set()
    for cfg in all_configs:
        uncovered |= pairs_of(cfg)
    chosen: list[dict[str, Any]] = []
    while uncovered:
        sample = rng.sample(all_configs, min(candidates, len(all_configs)))
        # Also consider configurations built to hold one specific uncovered pair.
        target = min(uncovered)
        a, va, b, vb = target
        sample += [c for c in rng.sample(all_configs, min(4 * candidates, len(all_configs)))
                   if repr(c[a]) == va and repr(c[b]) == vb][:candidates]
        best = max(sample, key=lambda c: len(pairs_of(c) & uncovered))
        gain = pairs_of(best) & uncovered
        if not gain:  # the targeted pair was not in the sample: take any configuration that holds it
            best = next(c for c in all_configs if repr(c[a]) == va and repr(c[b]) == vb)
            gain = pairs_of(best) & uncovered
        uncovered -= gain
        chosen.append(best)
    return chosen
