"""LoRA adapters in PEFT's format on the Keras models: HF's ``PeftAdapterMixin`` methods, plus
``merge_adapter()``.

Every dense layer of the models is a :class:`LoraDense`: a ``keras.layers.Dense`` with the same
variables (so every base weight keeps its canonical path, ``.../attention/self/query/kernel``)
that, when the model has an active adapter targeting it, returns PEFT's unmerged LoRA,
``x @ W + b + scale * (dropout(x) @ A) @ B``, before its activation. A and B are Keras
variables at ``.../query/lora_A/kernel`` and ``.../query/lora_B/kernel`` -- the paths
:mod:`xlmr.adapters` gives them -- held by the adapter, not by the layer, so the model's
``weights`` (and ``canonical_state_dict``, ``from_pretrained``) stay the base model's.

Training: with a trainable adapter attached (``add_adapter``, or ``load_adapter(...,
is_trainable=True)``) the model's ``trainable_weights`` are the adapter's LoRA variables and
the variables of its ``modules_to_save``, so ``fit`` (either compile style) trains those alone
and the optimizer holds state for those alone; the base weights are left untouched. Attach,
switch or remove adapters before ``compile`` (the compiled train/predict functions are reset
when adapters change; your own ``tf.function``s must be traced again).

``save_pretrained`` writes the active adapter alone (PEFT's layout); ``merge_adapter()`` folds it
into the weights, after which ``save_pretrained`` writes the full model in any of the four
formats and ``export_saved_model`` serves it. ``model.save("x.keras")`` with an unmerged adapter
is refused (the adapter's variables are not layer weights, so Keras would leave them out).

A ``modules_to_save`` module (a classifier) is the model's own layer: while its adapter is
active and enabled the layer holds the adapter's copy, and the model's own values come back
when adapters are disabled, switched or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

import conversion
from conversion import adapters as adapter_io
from conversion.adapter_host import AdapterHostMixin
from xlmr import adapters as A
from xlmr.adapters import LoraConfig

from . import loading

__all__ = ["LoraConfig", "LoraDense", "TFAdapterMixin"]


@dataclass
class _Branch:
    """The LoRA branch of one layer: A (in, r) and B (r, out) as Keras variables, scale, dropout."""

    a: keras.Variable
    b: keras.Variable
    scale: float
    dropout: keras.layers.Dropout | None


@dataclass
class _Adapter:
    """One attached adapter: plan, branches by module, ``modules_to_save`` values while not in the
    model's variables, and whether it trains."""

    plan: A.AdapterPlan
    branches: dict[str, _Branch]
    saved: dict[str, np.ndarray]
    trainable: bool
    saved_variables: list = field(default_factory=list)


@dataclass
class _AdapterState:
    """The adapters of one model. ``live``: whose ``modules_to_save`` values the model's variables
    hold (None: the model's own, which ``originals`` keeps meanwhile)."""

    adapters: dict[str, _Adapter] = field(default_factory=dict)
    active: str | None = None
    enabled: bool = True
    live: str | None = None
    originals: dict[str, np.ndarray] = field(default_factory=dict)


class LoraDense(keras.layers.Dense):
    """``keras.layers.Dense`` that adds the LoRA branch of its model's active adapter, when it has one.

    Without an adapter it is ``keras.layers.Dense`` (same variables, same call). With one:
    ``activation(x @ kernel + bias + scale * (dropout(x) @ A) @ B)`` (dropout while training).
    """

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        branch = self._active_branch()
        if branch is None:
            return super().call(inputs, training=training)
        ops = keras.ops
        x = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        h = inputs if branch.dropout is None else branch.dropout(inputs, training=training)
        a = ops.cast(branch.a, inputs.dtype)  # (in, r)
        b = ops.cast(branch.b, inputs.dtype)  # (r, out)
        x = ops.add(x, ops.multiply(ops.matmul(ops.matmul(h, a), b), ops.cast(branch.scale, inputs.dtype)))
        return self.activation(x) if self.activation is not None else x

    def _active_branch(self) -> _Branch | None:
        lora = self.__dict__.get("_xlmr_lora")
        if lora is None:
            return None
        state, branches = lora
        if not state.enabled or state.active is None:
            return None
        return branches.get(state.active)


def _variable(value: np.ndarray, parent: str, name: str) -> keras.Variable:
    """A float32 Keras variable at ``<parent>/<name>/kernel``."""
    with keras.name_scope(name, override_parent=parent):
        return keras.Variable(np.asarray(value, np.float32), dtype="float32", trainable=True, name="kernel")


class TFAdapterMixin(AdapterHostMixin):
    """HF's ``PeftAdapterMixin`` methods for the Keras models (LoRA in PEFT's format), and ``merge_adapter``.

    The registry and the calls are :class:`conversion.adapter_host.AdapterHostMixin`'s; see the module
    docstring for how adapters are computed, trained and saved.
    """

    _adapter_state_class = _AdapterState

    # -- HF's PeftAdapterMixin (the rest: AdapterHostMixin) ----------------------------------------
    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, np.ndarray]:
        """The adapter's weights, canonical keys (``...query.lora_A.weight``) in PyTorch layouts, as HF's
        ``get_adapter_state_dict`` returns them (PEFT's files add ``base_model.model.``).

        Args:
            adapter_name: The adapter (the active one by default).
        """
        state = self._loaded_state()
        name = state.active if adapter_name is None else adapter_name
        adapter = self._adapter(name)
        out: dict[str, np.ndarray] = {}
        for module, branch in adapter.branches.items():
            target = adapter.plan.targets[module]
            out[target.a_key] = np.ascontiguousarray(np.asarray(branch.a.numpy(), np.float32).T)
            out[target.b_key] = np.ascontiguousarray(np.asarray(branch.b.numpy(), np.float32).T)
        out.update(self._read_weights(adapter.plan.saved) if state.live == name else adapter.saved)
        return out

    def merge_adapter(self, adapter_name: str | None = None) -> None:
        """Fold an adapter into the weights and remove it (PEFT's ``merge_and_unload``): each targeted
        kernel gains ``scale * (B @ A)``, the ``modules_to_save`` keep the adapter's values.
        ``save_pretrained`` then writes the full model, in any format.

        Args:
            adapter_name: The adapter (the active one by default).
        """
        state = self._loaded_state()
        name = state.active if adapter_name is None else adapter_name
        adapter = self._adapter(name)
        state.active, state.enabled = name, True
        self._adapters_changed()  # its modules_to_save values in the variables
        weights = self.get_adapter_state_dict(name)
        keys = [f"{m}.weight" for m in adapter.plan.targets]
        merged = A.merge(adapter.plan, {**self._read_weights(keys), **weights}, weights)
        loading.assign_state_dict(self, {k: merged[k] for k in keys})
        state.live, state.originals = None, {}  # its modules_to_save values are the model's own now
        self.delete_adapter(name)

    # -- Keras: what trains, what saves ---------------------------------------------------------
    @property
    def trainable_weights(self) -> list:
        """With an adapter attached: the active adapter's LoRA and ``modules_to_save`` variables (none
        for an adapter loaded for inference); otherwise Keras' own."""
        if not self._has_adapters():
            return super().trainable_weights
        return self._adapter_trainables() if self.trainable else []

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights if self._has_adapters() else super().trainable_variables

    @property
    def non_trainable_weights(self) -> list:
        return self._untrained(self.weights) if self._has_adapters() else super().non_trainable_weights

    @property
    def non_trainable_variables(self) -> list:
        return self._untrained(self.variables) if self._has_adapters() else super().non_trainable_variables

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras' ``save``; refused while an adapter is attached (Keras would leave it out)."""
        self._refuse_keras_save("save")
        return super().save(filepath, *args, **kwargs)

    def save_weights(self, filepath: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras' ``save_weights``; refused while an adapter is attached (Keras would leave it out)."""
        self._refuse_keras_save("save_weights")
        return super().save_weights(filepath, *args, **kwargs)

    # -- hooks for modeling.py ------------------------------------------------------------------
    def _save_adapter(self, save_directory: Any, format: str) -> Any:
        """Write the active adapter alone in PEFT's layout (HF's ``save_pretrained`` with an adapter)."""
        adapter = self._adapter(None)
        return adapter_io.save_adapter(
            save_directory,
            adapter.plan.config_to_save(),
            self.get_adapter_state_dict(),
            conversion.resolve_format(format),
        )

    # -- internals ------------------------------------------------------------------------------
    def _lora_layers(self, plan: A.AdapterPlan) -> dict[str, LoraDense]:
        """The dense layers of ``plan``'s targets, by canonical module name."""
        by_id = {id(v): key for key, (v, _) in loading.variable_map(self).items()}
        layers = {}
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.Dense) and layer.built:
                key = by_id.get(id(layer.kernel), "")
                module = key.removesuffix(".weight")
                if module in plan.targets:
                    if not isinstance(layer, LoraDense):
                        raise TypeError(f"{module} is a {type(layer).__name__}, not an xlmr_tf LoraDense")
                    layers[module] = layer
        missing = [m for m in plan.targets if m not in layers]
        if missing:
            raise RuntimeError(f"no dense layer found for {', '.join(missing)}")
        return layers

    def _attach(
        self, name: str, plan: A.AdapterPlan, weights: Mapping[str, np.ndarray], trainable: bool
    ) -> None:
        self.build_model()
        state = self._adapter_state(create=True)
        branches = {}
        for module, layer in self._lora_layers(plan).items():
            t = plan.targets[module]
            parent = layer.kernel.path.rpartition("/")[0]
            branches[module] = _Branch(
                a=_variable(np.asarray(weights[t.a_key]).T, parent, "lora_A"),
                b=_variable(np.asarray(weights[t.b_key]).T, parent, "lora_B"),
                scale=t.scale,
                dropout=keras.layers.Dropout(t.dropout) if t.dropout > 0 else None,
            )
            lora = layer.__dict__.get("_xlmr_lora")
            if lora is None:
                lora = (state, {})
                object.__setattr__(layer, "_xlmr_lora", lora)  # not a Keras-tracked attribute
            lora[1][name] = branches[module]
        vmap = loading.variable_map(self)
        state.adapters[name] = _Adapter(
            plan,
            branches,
            {k: np.array(weights[k], np.float32) for k in plan.saved},
            trainable,
            [vmap[k][0] for k in plan.saved],
        )

    def _untrained(self, variables: list) -> list:
        """``variables`` less the adapter's trained ones."""
        trained = {id(v) for v in self.trainable_weights}
        return [v for v in variables if id(v) not in trained]

    def _adapter_trainables(self) -> list:
        state = self._adapter_state()
        if state.active is None:
            return []
        adapter = state.adapters[state.active]
        if not adapter.trainable:
            return []
        variables = [v for branch in adapter.branches.values() for v in (branch.a, branch.b)]
        return variables + list(adapter.saved_variables)

    def _adapter_seed(self) -> int:
        return int(np.random.randint(2**31 - 1))

    def _read_weights(self, keys: Any) -> dict[str, np.ndarray]:
        """Canonical numpy arrays (PyTorch layouts) of some of the model's weights."""
        self.build_model()
        vmap = loading.variable_map(self)
        out = {}
        for key in keys:
            variable, transpose = vmap[key]
            value = np.asarray(variable.numpy(), np.float32)
            out[key] = np.ascontiguousarray(value.T) if transpose else value
        return out

    def _swap_saved(self, desired: str | None) -> None:
        """Put ``desired``'s ``modules_to_save`` values (None: the model's own) into the variables."""
        state = self._adapter_state()
        if desired == state.live:
            return
        if state.live is not None:
            old = state.adapters[state.live]
            old.saved = self._read_weights(old.plan.saved)
            loading.assign_state_dict(self, state.originals)
            state.originals = {}
        if desired is not None:
            new = state.adapters[desired]
            state.originals = self._read_weights(new.plan.saved)
            loading.assign_state_dict(self, new.saved)
        state.live = desired

    def _adapters_changed(self) -> None:
        """Bring the variables and Keras' compiled functions in line with the active adapter."""
        state = self._adapter_state()
        self._swap_saved(state.active if state.enabled else None)
        for attr in ("train_function", "test_function", "predict_function"):
            if getattr(self, attr, None) is not None:
                setattr(self, attr, None)

    def _forget_adapter(self, name: str) -> None:
        state = self._adapter_state()
        if state.live == name:
            self._swap_saved(None)
        for layer in self._lora_layers(state.adapters[name].plan).values():
            layer.__dict__["_xlmr_lora"][1].pop(name, None)

    def _refuse_keras_save(self, what: str) -> None:
        if self._has_adapters():
            raise ValueError(
                f"model.{what}() would leave out the attached LoRA adapter (its variables are not layer "
                "weights); save the adapter with save_pretrained() (PEFT's layout), or merge_adapter() first"
            )
