"""Devices a test runs on: the CPU always, CUDA where there is one (checked on the lent GPU
machine with `pytest -m cuda`; skipped here and in CI)."""

import pytest
import torch

CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]
