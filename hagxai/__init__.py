"""hagxai: learn explanation heads for vision models from human attention (HAG-XAI)."""

import os

# Intel MKL chooses a code path per call from the buffers' memory alignment unless told to keep
# one, so the same convolution backward on the same inputs differed in the last bits from run to
# run (measured: 10 of 11 repeats of one resnet18 gradient on 2 threads), and a seeded training
# drifted apart. "AUTO" keeps the best path for this CPU on every call. It must be set before
# MKL's first call, so it is set on importing hagxai; a value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO")

from hagxai.evidence import Evidence

__version__ = "0.1.0"
__all__ = ["Evidence", "__version__"]
