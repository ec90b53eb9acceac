"""Model outputs with HF's field names, shared by the three backends.

An output behaves like HF's ``ModelOutput``: attribute access (``out.logits``), key access
(``out["logits"]``), integer access and ``to_tuple()`` over the fields that are set (``None``
fields are skipped, as in HF), and iteration over the keys that are set.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .heads import HEADS


class ModelOutput(OrderedDict):
    """Ordered mapping of the non-None output fields, with attribute access."""

    _fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if args:
            if len(args) > 1 or not isinstance(args[0], dict):
                raise TypeError(f"{type(self).__name__} takes keyword arguments or one dict")
            kwargs = {**args[0], **kwargs}
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no field(s) {sorted(unknown)}; fields: {self._fields}"
            )
        for name in self._fields:
            value = kwargs.get(name)
            object.__setattr__(self, name, value)
            if value is not None:
                super().__setitem__(name, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._fields:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        object.__setattr__(self, key, value)
        if value is None:
            self.pop(key, None)
        else:
            super().__setitem__(key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._fields:
            self[name] = value
        else:
            object.__setattr__(self, name, value)

    def __reduce__(self):
        return (type(self), (dict(self),))

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[k] for k in self._fields if k in self)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={type(v).__name__}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"


def _make(name: str, fields: tuple[str, ...]) -> type[ModelOutput]:
    return type(
        name, (ModelOutput,), {"_fields": fields, "__doc__": f"HF's ``{name}``: {', '.join(fields)}."}
    )


# One class per head, named as HF's PyTorch output classes; the TF and Flax backends use them
# too (their HF names, TF... / Flax..., are aliases in those backends).
OUTPUT_CLASSES: dict[str, type[ModelOutput]] = {
    head.name: _make(head.output_class, head.outputs) for head in HEADS.values()
}

BaseModelOutputWithPoolingAndCrossAttentions = OUTPUT_CLASSES["base"]
CausalLMOutputWithCrossAttentions = OUTPUT_CLASSES["causal_lm"]
MaskedLMOutput = OUTPUT_CLASSES["masked_lm"]
SequenceClassifierOutput = OUTPUT_CLASSES["sequence_classification"]
MultipleChoiceModelOutput = OUTPUT_CLASSES["multiple_choice"]
TokenClassifierOutput = OUTPUT_CLASSES["token_classification"]
QuestionAnsweringModelOutput = OUTPUT_CLASSES["question_answering"]
# The backbone without pooler inside the heads returns the same fields.
BaseModelOutputWithPastAndCrossAttentions = _make(
    "BaseModelOutputWithPastAndCrossAttentions",
    ("last_hidden_state", "past_key_values", "hidden_states", "attentions", "cross_attentions"),
)
