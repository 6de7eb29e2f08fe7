#define EXODUS_ISA_NS baseline
#include "cpu_kernels.inc"
