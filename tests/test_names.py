"""The tensor vocabulary: module paths, aliases and selectors."""

import pytest
import torch

from imssa import ImssaError
from imssa.data import Split, calibration_subset
from imssa.names import activation_names, layer_generic, layer_of, select, tensor_names
from imssa.ssm import S4DConfig, S4DModel


def test_tensor_names_are_the_model_paths():
    model = S4DModel(S4DConfig(d_model=4, d_state=4, n_layers=2))
    params = dict(model.named_parameters())
    for name in tensor_names(2):
        module, _, leaf = name.rpartition(".")
        if leaf in ("A_bar", "B_bar"):  # discrete tensors: computed from the SSM's parameters
            assert f"{module}.log_dt" in params
        else:
            assert name in params, name
    assert len(tensor_names(2)) == 4 + 2 * 6
    assert activation_names(1) == ["encoder.input", "blocks.0.ssm.input", "blocks.0.ssm.output",
                                   "blocks.0.activation.output", "blocks.0.glu.output",
                                   "decoder.input"]


def test_selectors_aliases_paths_and_patterns():
    names = tensor_names(2)
    assert select("A", names) == ["blocks.0.ssm.A_bar", "blocks.1.ssm.A_bar"]
    assert select("encoder", names) == ["encoder.weight", "encoder.bias"]
    assert select("blocks.1.mix", names) == ["blocks.1.mix.weight", "blocks.1.mix.bias"]
    assert select("blocks.*.ssm.D,decoder.bias", names) == [
        "blocks.0.ssm.D", "blocks.1.ssm.D", "decoder.bias"]
    assert select(["mix", "C"], names) == [
        "blocks.0.ssm.C", "blocks.0.mix.weight", "blocks.0.mix.bias", "blocks.1.ssm.C",
        "blocks.1.mix.weight", "blocks.1.mix.bias"]
    with pytest.raises(ImssaError, match="unknown tensor 'A_barr'"):
        select("A_barr", names)
    assert layer_generic("blocks.3.ssm.A_bar") == "blocks.*.ssm.A_bar"
    assert layer_generic("decoder.weight") == "decoder.weight"
    assert layer_of("blocks.2.mix.weight") == 2 and layer_of("encoder.bias") is None


def test_calibration_subset_is_seeded_and_the_same_everywhere():
    x = torch.arange(50.0).view(50, 1, 1)
    split = Split(x, torch.zeros(50, dtype=torch.long))
    a, b = calibration_subset(split, 10), calibration_subset(split, 10)
    assert torch.equal(a, b) and a.shape == (10, 1, 1)
    assert len(set(a.flatten().tolist())) == 10
    assert not torch.equal(a, calibration_subset(split, 10, seed=1))
    assert calibration_subset(split, 500).shape[0] == 50
    with pytest.raises(ImssaError, match="calibration samples"):
        calibration_subset(split, 0)
