"""LoRA adapters in PEFT's format on the Flax models: HF's ``PeftAdapterMixin`` methods, plus
``merge_adapter()``.

``model.params`` stays the base model in HF's layout. An adapter is a tree of its own,
``model.adapter_params``, laid out like ``model.params`` so that one merge of the two trees gives
the adapted model's parameters: the LoRA leaves under the dense layers they adapt
(``{..., "query": {"lora_A": {"kernel": (in, r)}, "lora_B": {"kernel": (r, out)}}}``, the paths
:mod:`xlmr.adapters` gives) and copies of the ``modules_to_save`` (``{"classifier": {...}}``).
A call with an adapter enabled runs the linen module on the merged tree under
:func:`flax.linen.intercept_methods`: every ``nn.Dense`` whose parameters hold ``lora_A`` and
``lora_B`` returns ``x @ W + b + scale * (dropout(x) @ A) @ B``, PEFT's unmerged LoRA (dropout
only with ``train=True``).

Train an adapter with :func:`xlmr_flax.training.make_train_step`: with a trainable adapter
attached (``add_adapter``, or ``load_adapter(..., is_trainable=True)``) the step differentiates
and updates ``model.adapter_params`` alone and reads the frozen base from ``model.params``::

    model.add_adapter(LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                 modules_to_save=["classifier"]))
    step = make_train_step(model, optimizer)
    adapter, opt_state = model.adapter_params, optimizer.init(model.adapter_params)
    adapter, opt_state, loss = step(adapter, opt_state, batch, rng)
    model.adapter_params = adapter
    model.save_pretrained("my-adapter")  # adapter_config.json + adapter_model.safetensors

To pass the adapter to your own jitted function, give the model the merged tree:
``model(ids, params=combine(params, adapter))``; a ``params=`` tree without LoRA leaves gets the
model's own adapter merged in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import conversion
from conversion import adapters as adapter_io
from xlmr import adapters as A
from xlmr import weights as W
from xlmr.adapters import LoraConfig

__all__ = ["FlaxAdapterMixin", "LoraConfig", "combine"]


@dataclass
class _Adapter:
    """One attached adapter: its plan, its tree (``model.adapter_params`` layout), whether it trains."""

    plan: A.AdapterPlan
    params: dict
    trainable: bool


@dataclass
class _AdapterState:
    """The adapters of one model, the active one and whether adapters are enabled."""

    adapters: dict[str, _Adapter]
    active: str | None = None
    enabled: bool = True


def combine(params: Mapping, adapter_params: Mapping) -> dict:
    """``params`` with ``adapter_params``' leaves added (LoRA) or replacing theirs (modules_to_save).

    Args:
        params: The base parameters (``model.params``).
        adapter_params: An adapter tree (``model.adapter_params``).
    """
    flat = W.flatten_tree(params)
    flat.update(W.flatten_tree(adapter_params))
    return W.unflatten_tree(flat)


def _to_tree(state_dict: Mapping[str, np.ndarray]) -> dict:
    flat = W.to_backend(state_dict, "flax")
    return W.unflatten_tree({p: jnp.asarray(np.asarray(v, np.float32)) for p, v in flat.items()})


def _from_tree(tree: Mapping) -> dict[str, np.ndarray]:
    return W.from_backend({p: np.asarray(v, np.float32) for p, v in W.flatten_tree(tree).items()}, "flax")


def _lora_interceptor(plan: A.AdapterPlan, deterministic: bool):
    """A ``nn.intercept_methods`` interceptor adding the LoRA branch to the adapted ``nn.Dense`` layers."""
    targets = plan.targets

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, nn.Dense):
            return next_fun(*args, **kwargs)
        params = module.variables.get("params", {})
        if "lora_A" not in params:
            return next_fun(*args, **kwargs)
        name = ".".join(module.path)
        target = targets.get(name)
        if target is None:
            raise ValueError(
                f"the parameters hold LoRA weights for {name}, which the active adapter does not target"
            )
        y = next_fun(*args, **kwargs)
        x = jnp.asarray(args[0], module.dtype)
        if target.dropout > 0 and not deterministic:
            if not module.has_rng("dropout"):
                raise ValueError(f"lora_dropout={target.dropout} with train=True needs dropout_rng")
            keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - target.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - target.dropout), jnp.zeros((), x.dtype))
        a = jnp.asarray(params["lora_A"]["kernel"], module.dtype)  # (in, r)
        b = jnp.asarray(params["lora_B"]["kernel"], module.dtype)  # (r, out)
        return y + ((x @ a) @ b) * jnp.asarray(target.scale, module.dtype)

    return intercept


class FlaxAdapterMixin:
    """HF's ``PeftAdapterMixin`` methods for the Flax models (LoRA in PEFT's format), and ``merge_adapter``.

    See the module docstring for where the adapter lives and how it is computed and trained.
    """

    # -- HF's PeftAdapterMixin ------------------------------------------------------------------
    def add_adapter(self, adapter_config: Any, adapter_name: str | None = None) -> None:
        """Attach fresh LoRA branches and make them the active adapter, as HF's ``add_adapter``.

        B starts at zero (PEFT's ``init_lora_weights=True``), so the model's outputs do not change
        until it is trained; ``modules_to_save`` start as copies of the model's weights.

        Args:
            adapter_config: A :class:`xlmr.adapters.LoraConfig`, a ``peft.LoraConfig`` or an
                ``adapter_config.json`` dict.
            adapter_name: Its name (``"default"``).
        """
        name = adapter_name or A.DEFAULT_ADAPTER_NAME
        state = self._adapter_state(create=True)
        if name in state.adapters:
            raise ValueError(f"Adapter with name {name} already exists. Please use a different name.")
        config = LoraConfig.coerce(adapter_config, source="add_adapter").copy(
            base_model_name_or_path=getattr(self, "name_or_path", None), inference_mode=False
        )
        plan = A.plan_adapter(config, self.config, self.head, type(self).__name__)
        seed = int(jax.random.randint(jax.random.fold_in(self.key, len(state.adapters)), (), 0, 2**31 - 1))
        weights = A.init_weights(plan, self._base_weights(plan.saved), seed)
        state.adapters[name] = _Adapter(plan, _to_tree(weights), trainable=True)
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
            adapter_state_dict: The adapter's weights under PEFT's keys (numpy, torch, jax...).
            is_trainable: Train it further (:func:`xlmr_flax.training.make_train_step`).
        """
        name = adapter_name or A.DEFAULT_ADAPTER_NAME
        state = self._adapter_state(create=True)
        if name in state.adapters:
            raise ValueError(f"Adapter with name {name} already exists. Please use a different name.")
        config, weights, source = adapter_io.read_source(peft_model_id, peft_config, adapter_state_dict)
        plan = A.plan_adapter(
            config.copy(inference_mode=not is_trainable), self.config, self.head, type(self).__name__
        )
        checked = A.check_state_dict(plan, weights, source)
        state.adapters[name] = _Adapter(plan, _to_tree(checked), trainable=bool(is_trainable))
        if state.active is None:
            state.active = name

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

    def disable_adapters(self) -> None:
        """Run the base model alone (LoRA branches off, the original ``modules_to_save``)."""
        self._loaded_state().enabled = False

    def enable_adapters(self) -> None:
        """Run the active adapter again after :meth:`disable_adapters`."""
        self._loaded_state().enabled = True

    def active_adapters(self) -> list[str]:
        """The active adapter's name, in a list (HF's return type)."""
        state = self._loaded_state()
        return [state.active] if state.active is not None else []

    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, np.ndarray]:
        """The adapter's weights, canonical keys (``...query.lora_A.weight``) in PyTorch layouts, as HF's
        ``get_adapter_state_dict`` returns them (PEFT's files add ``base_model.model.``).

        Args:
            adapter_name: The adapter (the active one by default).
        """
        return _from_tree(self._adapter(adapter_name).params)

    def delete_adapter(self, adapter_names: str | list[str]) -> None:
        """Remove adapters (the model runs without them)."""
        state = self._loaded_state()
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        missing = [n for n in names if n not in state.adapters]
        if missing:
            raise ValueError(f"no adapter named {', '.join(missing)}; loaded: {list(state.adapters)}")
        for n in names:
            del state.adapters[n]
        if state.active in names:
            state.active = next(iter(state.adapters), None)

    def merge_adapter(self, adapter_name: str | None = None) -> None:
        """Fold an adapter into ``model.params`` and remove it (PEFT's ``merge_and_unload``): each
        targeted kernel gains ``scale * (B @ A)``, the ``modules_to_save`` take the adapter's weights.
        ``save_pretrained`` then writes the full model, in any format.

        Args:
            adapter_name: The adapter (the active one by default).
        """
        name = adapter_name or self._loaded_state().active
        adapter = self._adapter(name)
        plan = adapter.plan
        keys = [f"{m}.weight" for m in plan.targets] + list(plan.saved)
        merged = A.merge(plan, self._base_weights(keys), _from_tree(adapter.params))
        self.params = combine(self.params, _to_tree({k: merged[k] for k in keys}))
        self.delete_adapter(name)

    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        """``{adapter name: its config}`` (HF's attribute)."""
        state = self._adapter_state()
        return {} if state is None else {n: a.plan.config for n, a in state.adapters.items()}

    # -- the adapter tree -----------------------------------------------------------------------
    @property
    def adapter_params(self) -> dict:
        """The active adapter's tree: LoRA leaves and ``modules_to_save`` copies (see the module docstring)."""
        return self._adapter(None).params

    @adapter_params.setter
    def adapter_params(self, tree: Mapping) -> None:
        adapter = self._adapter(None)
        expected = {p: tuple(np.shape(v)) for p, v in W.flatten_tree(adapter.params).items()}
        given = {p: tuple(np.shape(v)) for p, v in W.flatten_tree(tree).items()}
        if expected != given:
            diff = sorted("/".join(p) for p in set(expected) ^ set(given))
            wrong = sorted("/".join(p) for p in expected if p in given and given[p] != expected[p])
            raise ValueError(
                f"adapter_params do not fit the adapter {self._loaded_state().active!r}: "
                + (f"extra or missing {', '.join(diff[:8])}" if diff else f"misshapen {', '.join(wrong[:8])}")
            )
        adapter.params = jax.tree_util.tree_map(jnp.asarray, dict(tree))

    # -- hooks for modeling.py and training.py ----------------------------------------------------
    def _has_adapters(self) -> bool:
        state = self._adapter_state()
        return state is not None and bool(state.adapters)

    def _adapted(
        self, params: Mapping | None, train: bool
    ) -> tuple[Mapping, contextlib.AbstractContextManager]:
        """The parameter tree of a call and the context to apply the module in.

        With an enabled adapter: ``params`` (``model.params`` by default) merged with the adapter's
        tree unless it already holds LoRA leaves, and the LoRA interceptor.
        """
        base = self.params if params is None else params
        state = self._adapter_state()
        if state is None or not state.enabled or state.active is None:
            return base, contextlib.nullcontext()
        adapter = state.adapters[state.active]
        first = next(iter(adapter.plan.targets.values()))
        path, _ = W.to_backend_path(first.a_key, "flax")
        tree = base if params is not None and _has_path(params, path) else combine(base, adapter.params)
        return tree, nn.intercept_methods(_lora_interceptor(adapter.plan, deterministic=not train))

    def _trained_adapter(self) -> _Adapter | None:
        """The adapter a train step trains: the active one, when enabled and trainable."""
        state = self._adapter_state()
        if state is None or state.active is None or not state.enabled:
            return None
        adapter = state.adapters[state.active]
        if not adapter.trainable:
            raise ValueError(
                f"the active adapter {state.active!r} was loaded for inference; load it with "
                "load_adapter(..., is_trainable=True) to train it (or disable_adapters() to train the model)"
            )
        return adapter

    def _save_adapter(self, save_directory: Any, format: str) -> Any:
        """Write the active adapter alone in PEFT's layout (HF's ``save_pretrained`` with an adapter)."""
        adapter = self._adapter(None)
        return adapter_io.save_adapter(
            save_directory,
            adapter.plan.config_to_save(),
            _from_tree(adapter.params),
            conversion.resolve_format(format),
        )

    # -- internals -------------------------------------------------------------------------------
    def _adapter_state(self, create: bool = False) -> _AdapterState | None:
        state = self.__dict__.get("_adapters_state")
        if state is None and create:
            state = self.__dict__["_adapters_state"] = _AdapterState({})
        return state

    def _loaded_state(self) -> _AdapterState:
        state = self._adapter_state()
        if state is None or not state.adapters:
            raise ValueError("No adapter loaded. Please load an adapter first.")
        return state

    def _adapter(self, name: str | None) -> _Adapter:
        state = self._loaded_state()
        name = state.active if name is None else name
        if name not in state.adapters:
            raise ValueError(f"no adapter named {name!r}; loaded: {list(state.adapters)}")
        return state.adapters[name]

    def _base_weights(self, keys: Any) -> dict[str, np.ndarray]:
        """Canonical numpy arrays of some of ``model.params``' weights."""
        flat = W.flatten_tree(self.params)
        out = {}
        for key in keys:
            path, transpose = W.to_backend_path(key, "flax")
            value = np.asarray(flat[path], np.float32)
            out[key] = np.ascontiguousarray(value.T) if transpose else value
        return out


def _has_path(tree: Mapping, path: tuple[str, ...]) -> bool:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
