"""Shared test settings: deterministic seeds and small thread counts (CI has 2 cores)."""
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
