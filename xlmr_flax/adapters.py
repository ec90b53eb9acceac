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
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import conversion
from conversion import adapters as adapter_io
from conversion.adapter_host import AdapterHostMixin
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

    adapters: dict[str, _Adapter] = field(default_factory=dict)
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


class FlaxAdapterMixin(AdapterHostMixin):
    """HF's ``PeftAdapterMixin`` methods for the Flax models (LoRA in PEFT's format), and ``merge_adapter``.

    The registry and the calls are :class:`conversion.adapter_host.AdapterHostMixin`'s; see the module
    docstring for where the adapter lives and how it is computed and trained.
    """

    _adapter_state_class = _AdapterState

    # -- HF's PeftAdapterMixin (the rest: AdapterHostMixin) ----------------------------------------
    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, np.ndarray]:
        """The adapter's weights, canonical keys (``...query.lora_A.weight``) in PyTorch layouts, as HF's
        ``get_adapter_state_dict`` returns them (PEFT's files add ``base_model.model.``).

        Args:
            adapter_name: The adapter (the active one by default).
        """
        return _from_tree(self._adapter(adapter_name).params)

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
        merged = A.merge(plan, self._read_weights(keys), _from_tree(adapter.params))
        self.params = combine(self.params, _to_tree({k: merged[k] for k in keys}))
        self.delete_adapter(name)

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
    def _adapter_seed(self) -> int:
        n = len(self._adapter_state(create=True).adapters)
        return int(jax.random.randint(jax.random.fold_in(self.key, n), (), 0, 2**31 - 1))

    def _attach(
        self, name: str, plan: A.AdapterPlan, weights: Mapping[str, np.ndarray], trainable: bool
    ) -> None:
        self._adapter_state(create=True).adapters[name] = _Adapter(plan, _to_tree(weights), trainable)

    def _read_weights(self, keys: Any) -> dict[str, np.ndarray]:
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
