"""Make the repository root importable when pytest runs from anywhere; one torch thread.

The test models are tiny: a second thread gains nothing, and when other processes load the
cores (the DDP tests, a parallel job) multi-threaded kernels wait on each other and run
tens of times slower.
"""
import sys
from pathlib import Path

import torch

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
torch.set_num_threads(1)
