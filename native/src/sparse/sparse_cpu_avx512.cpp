// The sparse-SGD CPU kernels compiled for AVX-512 (F, VL, DQ, BW), chosen at run time.  The same
// source as the other copies, so the same loops at four times the baseline's vector width; the
// strict flags still rule out FMA contraction (the forward's spikes must equal the reference bit
// for bit).
#define EXODUS_SPARSE_ISA avx512
#include "sparse_cpu_kernels.inc"
