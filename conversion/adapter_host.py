"""HF's ``PeftAdapterMixin`` methods, once for the TF and Flax models: the registry of attached LoRA
adapters (their names, the active one, enabled or not) and the calls that read, plan and check an
adapter before a backend holds its tensors.

``xlmr_tf.adapters.TFAdapterMixin`` and ``xlmr_flax.adapters.FlaxAdapterMixin`` subclass
:class:`AdapterHostMixin` and implement the tensor side: ``_read_weights(keys)`` (canonical numpy
arrays of some of the model's weights), ``_adapter_seed()`` (the seed of a fresh adapter),
``_attach(name, plan, weights, trainable)`` (hold one adapter's weights) and, where the backend
keeps state in the model, ``_adapters_changed()`` and ``_forget_adapter(name)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xlmr import adapters as A
from xlmr.adapters import LoraConfig

from .adapters import read_source

__all__ = ["AdapterHostMixin"]


class AdapterHostMixin:
    """The framework-neutral half of the TF and Flax ``PeftAdapterMixin`` (see the module docstring).

    ``_adapter_state_class`` is the backend's registry dataclass: ``adapters`` ({name: adapter,
    each with its ``plan``}), ``active`` (a name or None) and ``enabled`` fields, all defaulted.
    """

    _adapter_state_class: type

    # -- HF's PeftAdapterMixin ------------------------------------------------------------------
    def add_adapter(self, adapter_config: Any, adapter_name: str | None = None) -> None:
        """Attach fresh LoRA branches and make them the active adapter, as HF's ``add_adapter``.

        B starts at zero (PEFT's ``init_lora_weights=True``), so the model's outputs do not change
        until it is trained; ``modules_to_save`` start as copies of the model's weights. The
        initialisation follows ``keras.utils.set_random_seed`` (TF) or the model's PRNG key (Flax).

        Args:
            adapter_config: A :class:`xlmr.adapters.LoraConfig`, a ``peft.LoraConfig`` or an
                ``adapter_config.json`` dict.
            adapter_name: Its name (``"default"``).
        """
        name = self._new_adapter_name(adapter_name)
        config = LoraConfig.coerce(adapter_config, source="add_adapter").copy(
            base_model_name_or_path=getattr(self, "name_or_path", None), inference_mode=False
        )
        plan = A.plan_adapter(config, self.config, self.head, type(self).__name__)
        weights = A.init_weights(plan, self._read_weights(plan.saved), self._adapter_seed())
        self._attach(name, plan, weights, trainable=True)
        self.set_adapter(name)

    def load_adapter(
        self,
        peft_model_id: str | Any | None = None,
        adapter_name: str | None = None,
        peft_config: Any = None,
        adapter_state_dict: Mapping[str, Any] | None = None,
        is_trainable: bool = False,
    ) -> None:
        """Load a PEFT LoRA adapter (unmerged: its branches run beside the frozen weights).

        The first adapter loaded becomes the active one; later ones wait for :meth:`set_adapter`.
        Call :meth:`merge_adapter` afterwards to fold it into the weights.

        Args:
            peft_model_id: A local PEFT adapter directory (``adapter_config.json`` +
                ``adapter_model.safetensors`` or ``adapter_model.bin``).
            adapter_name: Its name (``"default"``).
            peft_config: The adapter config, with ``adapter_state_dict`` instead of a directory.
            adapter_state_dict: The adapter's weights under PEFT's keys (numpy, torch, tf, jax...).
            is_trainable: Train it further (TF: its variables become the model's
                ``trainable_weights``; Flax: :func:`xlmr_flax.training.make_train_step`).
        """
        name = self._new_adapter_name(adapter_name)
        config, weights, source = read_source(peft_model_id, peft_config, adapter_state_dict)
        plan = A.plan_adapter(
            config.copy(inference_mode=not is_trainable), self.config, self.head, type(self).__name__
        )
        checked = A.check_state_dict(plan, weights, source)
        self._attach(name, plan, checked, trainable=bool(is_trainable))
        state = self._adapter_state()
        if state.active is None:
            state.active = name
        self._adapters_changed()

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        """Make ``adapter_name`` the active adapter (one at a time)."""
        state = self._loaded_state()
        if isinstance(adapter_name, list | tuple):
            if len(adapter_name) != 1:
                raise ValueError(f"one adapter is active at a time, got {list(adapter_name)}")
            adapter_name = adapter_name[0]
        if adapter_name not in state.adapters:
            raise ValueError(
                f"Adapter with name {adapter_name} not found. Please pass the correct adapter name among "
                f"{list(state.adapters)}"
            )
        state.active = adapter_name
        self._adapters_changed()

    def disable_adapters(self) -> None:
        """Run the base model alone (LoRA branches off, the model's own ``modules_to_save`` values)."""
        self._loaded_state().enabled = False
        self._adapters_changed()

    def enable_adapters(self) -> None:
        """Run the active adapter again after :meth:`disable_adapters`."""
        self._loaded_state().enabled = True
        self._adapters_changed()

    def active_adapters(self) -> list[str]:
        """The active adapter's name, in a list (HF's return type)."""
        state = self._loaded_state()
        return [state.active] if state.active is not None else []

    def delete_adapter(self, adapter_names: str | list[str]) -> None:
        """Remove adapters (the model runs without them; their ``modules_to_save`` values are dropped)."""
        state = self._loaded_state()
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        missing = [n for n in names if n not in state.adapters]
        if missing:
            raise ValueError(f"no adapter named {', '.join(missing)}; loaded: {list(state.adapters)}")
        for n in names:
            self._forget_adapter(n)
            del state.adapters[n]
        if state.active in names:
            state.active = next(iter(state.adapters), None)
        self._adapters_changed()

    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        """``{adapter name: its config}`` (HF's attribute)."""
        state = self._adapter_state()
        return {} if state is None else {n: a.plan.config for n, a in state.adapters.items()}

    # -- the registry ---------------------------------------------------------------------------
    def _has_adapters(self) -> bool:
        state = self._adapter_state()
        return state is not None and bool(state.adapters)

    def _adapter_state(self, create: bool = False) -> Any:
        state = self.__dict__.get("_xlmr_adapters")
        if state is None and create:
            state = self._adapter_state_class()
            object.__setattr__(self, "_xlmr_adapters", state)  # not a framework-tracked attribute
        return state

    def _loaded_state(self) -> Any:
        state = self._adapter_state()
        if state is None or not state.adapters:
            raise ValueError("No adapter loaded. Please load an adapter first.")
        return state

    def _adapter(self, name: str | None) -> Any:
        state = self._loaded_state()
        name = state.active if name is None else name
        if name not in state.adapters:
            raise ValueError(f"no adapter named {name!r}; loaded: {list(state.adapters)}")
        return state.adapters[name]

    def _new_adapter_name(self, adapter_name: str | None) -> str:
        """The name a new adapter gets, refused when an adapter holds it already."""
        name = adapter_name or A.DEFAULT_ADAPTER_NAME
        if name in self._adapter_state(create=True).adapters:
            raise ValueError(f"Adapter with name {name} already exists. Please use a different name.")
        return name

    # -- the backend's side -----------------------------------------------------------------------
    def _read_weights(self, keys: Any) -> dict[str, np.ndarray]:
        """Canonical numpy arrays (PyTorch layouts) of some of the model's weights."""
        raise NotImplementedError

    def _adapter_seed(self) -> int:
        raise NotImplementedError

    def _attach(
        self, name: str, plan: A.AdapterPlan, weights: Mapping[str, np.ndarray], trainable: bool
    ) -> None:
        raise NotImplementedError

    def _adapters_changed(self) -> None:
        """Bring the backend in line with the registry after a change (nothing by default)."""

    def _forget_adapter(self, name: str) -> None:
        """Drop what the backend holds for the adapter ``name`` before it leaves the registry."""
