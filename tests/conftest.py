"""Suite-wide guard: a test that leaves torch's grad mode off, or changes imssa's or Triton's
environment variables without restoring them, fails itself, instead of failing later tests far
from its cause (as a Ctrl-C inside ``torch.no_grad`` once did, and an IMSSA_CROSSBAR_SCAN left
at ``triton``)."""

import os

import pytest
import torch

_PREFIXES = ("IMSSA_", "TRITON_")


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_PREFIXES)}


@pytest.fixture(autouse=True)
def _global_state_is_kept():
    before = _environment()
    yield
    after = _environment()
    os.environ.update(before)
    for name in after.keys() - before.keys():
        del os.environ[name]
    assert torch.is_grad_enabled(), "this test left torch's grad mode off"
    torch.set_grad_enabled(True)
    assert after == before, f"this test changed the environment: {before} -> {after}"
