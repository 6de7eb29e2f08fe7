// The core (LIF, leaky) CPU kernels compiled for AVX-512 (F, VL, DQ, BW), chosen at run time: the same
// source as the other copies at twice AVX2's vector width (the backward's surrogate evaluation is
// compute-bound); the strict flags rule out FMA contraction (it would change the forward bit pattern).
#define EXODUS_ISA_NS avx512
#include "cpu_kernels.inc"
