"""torch.library custom ops of the native EXODUS core (CPU and CUDA, with fake implementations
for torch.compile): ``exodus::lif_forward``, ``exodus::lif_backward``, ``exodus::leaky_forward``,
``exodus::leaky_backward``.  Importing this package registers them."""

from exodus_lightning.ops.leaky import leaky_backward, leaky_forward
from exodus_lightning.ops.lif import BACKWARD_MODES, LIFFunction, LIFKernelArguments, lif_backward, lif_forward

__all__ = [
    "lif_forward",
    "lif_backward",
    "leaky_forward",
    "leaky_backward",
    "LIFFunction",
    "LIFKernelArguments",
    "BACKWARD_MODES",
]
