"""What the backends' loading, training and task code may assume of a model, without importing it.

``xlmr_torch/loading.py``, ``xlmr_tf/loading.py`` and ``xlmr_flax/loading.py`` are imported by their
``modeling.py``; typing their arguments against these protocols (instead of the model classes)
keeps the import graph one-way: modeling -> loading -> conversion -> xlmr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .config import XLMRobertaConfig
from .heads import Head


@runtime_checkable
class PretrainedModel(Protocol):
    """Any xlmr model of any backend: a config, a head, and canonical weights in and out."""

    config: XLMRobertaConfig
    head: Head | None

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under their canonical names (HF PyTorch keys and layouts)."""
        ...

    def load_canonical_state_dict(self, state_dict: Mapping[str, Any]) -> Any:
        """Take weights under their canonical names (checked: missing/unexpected/misshapen keys)."""
        ...


class PretrainedModelClass(Protocol):
    """A model class: constructed from a config, and knowing its head."""

    head: Head | None

    def __call__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any) -> PretrainedModel: ...
