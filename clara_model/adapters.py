"""The three LoRA adapters on one base model: creation, scoped selection, trainability, state dicts.

PEFT's LoRA layers hold every adapter side by side (`lora_A[name]`, `lora_B[name]`). Two rules make this safe
where the original was not (reference §1.2, §6 B1):

1. **Selection is scoped, never ambient.** `with use_adapter(model, Adapter.ENCODER):` activates one adapter for
   the forward passes inside it and restores the previous state in `finally`. It does not touch
   `requires_grad`: PEFT's `set_adapter` does (it freezes every inactive adapter), which made the original's
   gradients depend on the order of its 16 `set_adapter` calls.
2. **Recomputation replays the same adapter.** With activation checkpointing a layer's forward runs again during
   backward, long after the `with` block has exited. `enable_activation_checkpointing` gives every checkpointed
   layer a checkpoint function that records the adapter active at forward time and re-activates it for the
   replay. The original recomputed encoder blocks with the decoder's LoRA active (silently wrong gradients).

Trainability is set once, from the stage config, by `set_trainable`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from clara_model.config import Adapter, LoraSettings

logger = logging.getLogger(__name__)

PEFT_KEY_PREFIX = "base_model.model."  # how PeftModel.save_pretrained names keys; kept for interoperability


def lora_config(settings: LoraSettings, base_model_name: str | None = None) -> LoraConfig:
    """Return the PEFT config of one CLaRa adapter."""
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules
        if isinstance(settings.target_modules, str)
        else list(settings.target_modules),
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model_name,
    )


def add_adapters(model: PreTrainedModel, adapters: Iterable[Adapter], settings: LoraSettings) -> None:
    """Inject one fresh LoRA per adapter into `model`; afterwards no adapter is active and none trains.

    Raises:
        ValueError: when an adapter already exists.
    """
    existing = set(adapter_names(model))
    for adapter in adapters:
        if adapter.value in existing:
            raise ValueError(f"adapter {adapter.value!r} already exists on this model")
        with warnings.catch_warnings():
            # Several adapters on one model is the point here; PEFT warns about it on every injection after the first.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_adapter_in_model(lora_config(settings, model.name_or_path), model, adapter_name=adapter.value)
    model.train(model.training)  # the injected dropout modules start in train mode; align them with the model
    _activate(_lora_layers(model), ())
    set_trainable(model, ())


def adapter_names(model: nn.Module) -> list[str]:
    """Return the names of the adapters injected into `model`, sorted."""
    names: set[str] = set()
    for layer in _lora_layers(model):
        names.update(layer.lora_A.keys())
    return sorted(names)


@contextlib.contextmanager
def use_adapter(model: nn.Module, adapter: Adapter) -> Iterator[None]:
    """Run the forward passes inside the block with `adapter` (and only it) active; restore on exit.

    Raises:
        ValueError: when `model` has no such adapter.
    """
    layers = _lora_layers(model)
    if not layers or adapter.value not in layers[0].lora_A:
        raise ValueError(f"model has no adapter {adapter.value!r}; it has {adapter_names(model)}")
    previous = [tuple(layer.active_adapters) for layer in layers]
    _activate(layers, (adapter.value,))
    try:
        yield
    finally:
        for layer, names in zip(layers, previous):
            layer._active_adapter = list(names)


def active_adapters(module: nn.Module) -> tuple[str, ...]:
    """Return the adapter names active in `module`'s LoRA layers (empty when none is)."""
    layers = _lora_layers(module)
    return tuple(layers[0].active_adapters) if layers else ()


def adapter_parameters(model: nn.Module, adapter: Adapter) -> dict[str, nn.Parameter]:
    """Return `adapter`'s parameters keyed as PEFT saves them (the adapter name dropped from the key)."""
    # "...q_proj.lora_A.encoder.weight" -> "...q_proj.lora_A.weight"
    pattern = re.compile(rf"\.({'|'.join(LoraLayer.adapter_layer_names)})\.{re.escape(adapter.value)}\.")
    params = {}
    for name, param in model.named_parameters():
        key, found = pattern.subn(r".\1.", name)
        if found:
            params[key] = param
    return params


def set_trainable(model: nn.Module, adapters: Iterable[Adapter]) -> list[nn.Parameter]:
    """Freeze every parameter of `model` except the LoRA weights of `adapters`; return those.

    Call once, when a stage is set up. Switching adapters with `use_adapter` never changes it.
    """
    model.requires_grad_(False)
    trainable = []
    for adapter in adapters:
        params = adapter_parameters(model, adapter)
        if not params:
            raise ValueError(f"model has no adapter {adapter.value!r}; it has {adapter_names(model)}")
        for param in params.values():
            param.requires_grad_(True)
            trainable.append(param)
    return trainable


def adapter_state_dict(model: nn.Module, adapter: Adapter) -> dict[str, torch.Tensor]:
    """Return `adapter`'s weights as a PEFT-format state dict (keys as `PeftModel.save_pretrained` writes them)."""
    return {PEFT_KEY_PREFIX + key: param.detach() for key, param in adapter_parameters(model, adapter).items()}


def load_adapter_state_dict(model: nn.Module, adapter: Adapter, state: Mapping[str, torch.Tensor]) -> None:
    """Copy a PEFT-format state dict into `adapter`'s weights, checking keys and shapes first.

    Raises:
        KeyError: on missing or unexpected keys (listing a few of each).
        ValueError: on a shape mismatch.
    """
    params = adapter_parameters(model, adapter)
    incoming = {key.removeprefix(PEFT_KEY_PREFIX): value for key, value in state.items()}
    missing = sorted(set(params) - set(incoming))
    unexpected = sorted(set(incoming) - set(params))
    if missing or unexpected:
        raise KeyError(
            f"adapter {adapter.value!r}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    with torch.no_grad():
        for key, param in params.items():
            if incoming[key].shape != param.shape:
                raise ValueError(
                    f"adapter {adapter.value!r}: {key} has shape {tuple(incoming[key].shape)}, "
                    f"the model expects {tuple(param.shape)} (different base model or LoRA rank?)"
                )
            param.copy_(incoming[key])


def copy_adapter(model: nn.Module, source: Adapter, target: Adapter) -> None:
    """Overwrite `target`'s weights with a copy of `source`'s (e.g. the stage-3 query reasoner from the encoder)."""
    load_adapter_state_dict(model, target, adapter_state_dict(model, source))


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Checkpoint every decoder layer, replaying each recomputation with the adapter its forward used."""
    model.activation_checkpointing_enable({"use_reentrant": False})
    # transformers also hooks the input embeddings to require grad, which only reentrant checkpointing needs.
    model.disable_input_require_grads()
    for layer in model.modules():
        if isinstance(layer, GradientCheckpointingLayer) and layer.gradient_checkpointing:
            # transformers calls `layer._gradient_checkpointing_func(forward, *args)`; we replace only the function.
            layer._gradient_checkpointing_func = _AdapterReplayCheckpoint(_lora_layers(layer))
    logger.info("activation checkpointing on every decoder layer, replaying each layer's adapter")


class _AdapterReplayCheckpoint:
    """`torch.utils.checkpoint` whose recomputation runs under the adapters that were active in the forward."""

    def __init__(self, lora_layers: list[LoraLayer]) -> None:
        self.lora_layers = lora_layers

    def __call__(self, function: Callable[..., Any], *args: Any) -> Any:
        active = tuple(self.lora_layers[0].active_adapters) if self.lora_layers else ()

        def replay(*inputs: Any) -> Any:
            previous = [tuple(layer.active_adapters) for layer in self.lora_layers]
            _activate(self.lora_layers, active)
            try:
                return function(*inputs)
            finally:
                for layer, names in zip(self.lora_layers, previous):
                    layer._active_adapter = list(names)

        # Non-reentrant: no need for inputs that require grad, and keyword arguments are supported.
        return checkpoint(replay, *args, use_reentrant=False)


def _lora_layers(module: nn.Module) -> list[LoraLayer]:
    return [m for m in module.modules() if isinstance(m, LoraLayer)]


def _activate(layers: Iterable[LoraLayer], names: tuple[str, ...]) -> None:
    # PEFT's set_adapter would also rewrite requires_grad (freezing inactive adapters); trainability is the
    # stage's decision, made once in set_trainable, so only the active list is set here.
    for layer in layers:
        layer._active_adapter = list(names)
