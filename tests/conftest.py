import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def float64():
    """Float64 as the default dtype for one test (for checks to round-off), restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_grid(steps: int, start: float = 0.0, stop: float = 1.0, seed: int = 0) -> list[float]:
    """A non-uniform grid: random step sizes between 0.3 and 1.7 times the mean."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.3, 1.7, size=steps)
    t = np.concatenate([[0.0], np.cumsum(h)])
    t = start + (stop - start) * t / t[-1]
    t[-1] = stop
    return t.tolist()
