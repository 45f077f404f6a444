"""imdb-sentiment: train, evaluate, compare and serve sentiment classifiers on IMDB."""

import logging
import os

__version__ = "0.1.0"

# OpenMP (torch's CPU thread pool) reads its wait policy once, when torch loads it, so it is set here,
# before any module of this package imports torch. By default idle OpenMP threads spin for a while
# before sleeping; with another process busy on one of the cores, the spinning threads took CPU time
# from the one doing the work and a 2-thread run went 2.4-4.2x slower. PASSIVE threads sleep at once.
# A policy the user set wins; a program that imported torch before this package keeps torch's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# transformers imports torchao (the int8 extra) whenever it is installed; torchao then logs a warning
# for each CUDA-only kernel it cannot load, and torch one for each of torchao's pytree registrations:
# two to four lines of noise on every command, about nothing this package uses.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
