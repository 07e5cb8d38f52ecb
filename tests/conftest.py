"""Suite-wide guard: a test that leaves torch's grad mode off fails itself, instead of failing
every later test that trains (as a Ctrl-C inside ``torch.no_grad`` once did, far from its cause)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _grad_mode_is_kept():
    yield
    assert torch.is_grad_enabled(), "this test left torch's grad mode off"
    torch.set_grad_enabled(True)
