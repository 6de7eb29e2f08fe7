// The sparse-SGD CPU kernels compiled with -mavx2 (no -mfma: FMA contraction would change the
// forward's rounding, and the spikes must equal the reference bit for bit); chosen at run time.
#define EXODUS_SPARSE_ISA avx2
#include "sparse_cpu_kernels.inc"
