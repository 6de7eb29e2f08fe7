// Compiled with -mavx2 (no -mfma: FMA contraction would change the forward bit pattern).
#define EXODUS_ISA_NS avx2
#include "cpu_kernels.inc"
