"""Reading quantization settings and models saved before one name per tensor: the one place
where the old names are translated.

Before, a quantization target was a flat name (``A_bar``, ``mix_weight``, ``pooled``; per layer
``blocks.0.A_bar``), a granularity of one range per channel was called ``head``, noise components
were ``A_bar`` ... ``decoder``, and a QAT ``model.pt`` held the state dict of the ``QuantizedS4D``
wrapper (``model.*``, ``q.*``, ``qb.<i>.*``, ``discrete_params.<i>.*``). The committed runs of
``results/quant/``, ``results/quant-beyond/`` and ``results/crossbar-*/`` are written that way;
every reader of saved configs and models calls the functions here, so they load unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: old target name -> its imssa.names path (layer-generic for per-layer targets)
OLD_TARGETS: dict[str, str] = {
    "input": "encoder.input", "encoder_weight": "encoder.weight", "encoder_bias": "encoder.bias",
    "ssm_input": "blocks.*.ssm.input", "A_bar": "blocks.*.ssm.A_bar",
    "B_bar": "blocks.*.ssm.B_bar", "C": "blocks.*.ssm.C", "D": "blocks.*.ssm.D",
    "x": "blocks.*.ssm.x", "ssm_output": "blocks.*.ssm.output",
    "gelu_output": "blocks.*.activation.output", "mix_weight": "blocks.*.mix.weight",
    "mix_bias": "blocks.*.mix.bias", "mix_output": "blocks.*.glu.output",
    "pooled": "decoder.input", "decoder_weight": "decoder.weight", "decoder_bias": "decoder.bias",
}
#: old quantizer names inside the SSM (conv mode's half-bit quantizers)
_OLD_SSM_EXTRA = {"conv_input": "blocks.*.ssm.conv_input", "kernel": "blocks.*.ssm.kernel"}
#: old noise component -> imssa.names alias
OLD_COMPONENTS: dict[str, str] = {"A_bar": "A", "B_bar": "B"}
OLD_GRANULARITIES: dict[str, str] = {"head": "channel"}
_OLD_LAYER = re.compile(r"^blocks\.(\d+)\.(\w+)$")


def target_name(name: str) -> str:
    """An old target name (``mix_weight``, ``blocks.0.A_bar``) as its path; others unchanged."""
    if name in OLD_TARGETS:
        return OLD_TARGETS[name]
    m = _OLD_LAYER.match(name)
    if m and m.group(2) in OLD_TARGETS:
        return OLD_TARGETS[m.group(2)].replace("*", m.group(1), 1)
    return name


def spec_dict(d: Any) -> Any:
    """QuantSpec fields with the old granularity word translated."""
    if isinstance(d, Mapping) and d.get("granularity") in OLD_GRANULARITIES:
        return {**d, "granularity": OLD_GRANULARITIES[d["granularity"]]}
    return d


def overrides(d: Mapping[str, Any]) -> dict[str, Any]:
    """``--set`` overrides keyed by old target names, translated (keys and granularity)."""
    return {target_name(k): spec_dict(v) for k, v in d.items()}


def quant_config_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A :meth:`QuantConfig.to_dict` dict, translated from the old flat layout if it is one."""
    if not any(k in OLD_TARGETS for k in d):
        return {**d, "specs": {k: spec_dict(v) for k, v in d.get("specs", {}).items()},
                "layers": {k: spec_dict(v) for k, v in d.get("layers", {}).items()}}
    out: dict[str, Any] = {"specs": {OLD_TARGETS[k]: spec_dict(v) for k, v in d.items()
                                     if k in OLD_TARGETS},
                           "layers": overrides(d.get("layers", {}))}
    out.update({k: v for k, v in d.items() if k not in OLD_TARGETS and k != "layers"})
    return out


def quant_run_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved ``QuantRunConfig`` (the ``quant`` key of a PTQ/QAT folder), translated."""
    out = dict(d)
    out["overrides"] = overrides(d.get("overrides", {}))
    if out.get("x_granularity") in OLD_GRANULARITIES:
        out["x_granularity"] = OLD_GRANULARITIES[out["x_granularity"]]
    return out


def components(items: Any) -> Any:
    """Noise components with the old names (``A_bar``, ``B_bar``) as aliases; others unchanged."""
    if isinstance(items, str):
        return ",".join(OLD_COMPONENTS.get(s.strip(), s.strip()) for s in items.split(","))
    return [OLD_COMPONENTS.get(s, s) for s in items]


def qat_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved ``QATConfig`` (the ``qat`` key of a QAT folder), translated."""
    out = dict(d)
    if "train_noise_on" in out:
        out["train_noise_on"] = components(out["train_noise_on"])
    return out


def _quantizer_path(old: str) -> str | None:
    """``q.pooled.hi`` -> ``decoder.q.input.hi``; ``qb.0.mix_weight.lo`` ->
    ``blocks.0.mix.q.weight.lo``; None for a key that is not an old quantizer's."""
    parts = old.split(".")
    if parts[0] == "q":
        target, rest = OLD_TARGETS[parts[1]], parts[2:]
    elif parts[0] == "qb":
        name = parts[2]
        target = (OLD_TARGETS.get(name) or _OLD_SSM_EXTRA[name]).replace("*", parts[1], 1)
        rest = parts[3:]
    else:
        return None
    module, _, tensor = target.rpartition(".")
    return ".".join([module, "q", tensor, *rest])


def state_dict(old: Mapping[str, Any], parameterization: str) -> dict[str, Any]:
    """The state dict of a saved ``QuantizedS4D`` as that of :func:`imssa.quant.prepare`'s model.

    ``model.*`` are the float model's tensors (the continuous SSM parameters of a ``discrete`` /
    ``frozen-a`` model were unused and are dropped, except D); ``discrete_params.<i>.*`` are the
    discrete SSM parameters; ``q.*`` and ``qb.<i>.*`` the quantizers' ranges.
    """
    if not any(k.startswith(("model.", "q.", "qb.")) for k in old):
        return dict(old)  # already in the new layout
    new: dict[str, Any] = {}
    for key, value in old.items():
        if key.startswith("model."):
            key = key[len("model."):]
            m = re.match(r"^(blocks\.\d+\.ssm)\.(\w+)$", key)
            if m:
                if parameterization != "continuous" and m.group(2) != "D":
                    continue
                key = f"{m.group(1)}.params.{m.group(2)}"
            new[key] = value
        elif key.startswith("discrete_params."):
            _, i, name = key.split(".", 2)
            new[f"blocks.{i}.ssm.params.{name}"] = value
        else:
            path = _quantizer_path(key)
            if path is not None:
                new[path] = value
    return new
