"""Emotune: emotion-aware voice bots (config, errors and the ``emotune`` command)."""

import os

# The streaming path is sized for one core per stream worker: numpy's BLAS must not start a
# thread per core that then spins against onnxruntime (measured here: small matmuls 100x slower
# under load). setdefault: an operator's explicit setting wins; it only takes effect if numpy is
# not imported yet, which holds for the CLI and the gateway.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
