"""The seven XLM-R heads as data, so that no backend re-decides them.

For each head: its class name in each backend (HF's names), the prefix under which the
backbone's weights live in its checkpoints, whether the backbone has a pooler, the output
fields in the order ``return_dict=False`` gives them, the label arguments and the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

_ENCODER_EXTRAS = ("hidden_states", "attentions")


@dataclass(frozen=True)
class Head:
    """One head of the model family.

    Attributes:
        name: Short name used across the project (``"masked_lm"``...).
        stem: The class name after ``XLMRoberta`` (``"ForMaskedLM"``); ``torch_class`` /
            ``tf_class`` / ``flax_class`` are HF's names built from it.
        loss: Loss kind, see ``LOSSES`` (None: no loss).
        output_class: HF's PyTorch output class name (TF / Flax prepend ``TF`` / ``Flax``).
        head_modules: Top-level attribute names of the head's own weights.
        prefix: Attribute holding the backbone (``"roberta"``); empty for the bare model.
        add_pooling_layer: Whether the backbone of this head has a pooler.
        outputs: Output fields in tuple order (``loss`` first when labels are given).
        label_args: Call arguments carrying the targets.
        input_rank: Rank of ``input_ids``: 2 (batch, seq), or 3 (batch, num_choices, seq) for
            multiple choice.
        decodes: Whether the head can run as a decoder with a key/value cache.
        prediction: Output field(s) that Keras losses, metrics and ``predict`` use, in order.
        packable: Whether the head accepts packed rows (``segment_ids``).
        per_sequence: Whether the head's outputs have one row per sequence (read from the first
            token) rather than one per token.
    """

    name: str
    stem: str
    loss: str | None
    output_class: str
    head_modules: tuple[str, ...] = ()
    prefix: str = "roberta"
    add_pooling_layer: bool = False
    outputs: tuple[str, ...] = ("loss", "logits", *_ENCODER_EXTRAS)
    label_args: tuple[str, ...] = ("labels",)
    input_rank: int = 2
    decodes: bool = False
    prediction: tuple[str, ...] = ("logits",)
    packable: bool = False
    per_sequence: bool = False

    @property
    def torch_class(self) -> str:
        return "XLMRoberta" + self.stem

    @property
    def tf_class(self) -> str:
        return "TF" + self.torch_class

    @property
    def flax_class(self) -> str:
        return "Flax" + self.torch_class

    def class_name(self, backend: str) -> str:
        return {"torch": self.torch_class, "tf": self.tf_class, "flax": self.flax_class}[backend]

    def output_class_name(self, backend: str) -> str:
        """HF's output class name in ``backend`` (``TFMaskedLMOutput``, ``FlaxMaskedLMOutput``...)."""
        return {"torch": "", "tf": "TF", "flax": "Flax"}[backend] + self.output_class


# Loss kinds; what each computes is specified once in xlmr.losses (LOSS_SPECS).
LOSSES = (
    "causal_lm",
    "masked_lm",
    "sequence_classification",
    "multiple_choice",
    "token_classification",
    "span",
)

_HEAD_LIST = (
    Head(
        "base",
        "Model",
        None,
        "BaseModelOutputWithPoolingAndCrossAttentions",
        prefix="",
        add_pooling_layer=True,
        label_args=(),
        decodes=True,
        packable=True,
        outputs=(
            "last_hidden_state",
            "pooler_output",
            "hidden_states",
            "past_key_values",
            "attentions",
            "cross_attentions",
        ),
        prediction=("last_hidden_state",),
    ),
    Head(
        "causal_lm",
        "ForCausalLM",
        "causal_lm",
        "CausalLMOutputWithCrossAttentions",
        ("lm_head",),
        outputs=("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions"),
        decodes=True,
    ),
    Head("masked_lm", "ForMaskedLM", "masked_lm", "MaskedLMOutput", ("lm_head",), packable=True),
    Head(
        "sequence_classification",
        "ForSequenceClassification",
        "sequence_classification",
        "SequenceClassifierOutput",
        ("classifier",),
        packable=True,
        per_sequence=True,
    ),
    Head(
        "multiple_choice",
        "ForMultipleChoice",
        "multiple_choice",
        "MultipleChoiceModelOutput",
        ("classifier",),
        add_pooling_layer=True,
        input_rank=3,
        per_sequence=True,
    ),
    Head(
        "token_classification",
        "ForTokenClassification",
        "token_classification",
        "TokenClassifierOutput",
        ("classifier",),
        packable=True,
    ),
    Head(
        "question_answering",
        "ForQuestionAnswering",
        "span",
        "QuestionAnsweringModelOutput",
        ("qa_outputs",),
        outputs=("loss", "start_logits", "end_logits", *_ENCODER_EXTRAS),
        label_args=("start_positions", "end_positions"),
        prediction=("start_logits", "end_logits"),
        packable=True,
    ),
)

HEADS: dict[str, Head] = {h.name: h for h in _HEAD_LIST}

HEAD_NAMES = tuple(HEADS)


def get_head(name_or_class: str) -> Head:
    """Look a head up by short name or by any backend's class name (``"TFXLMRobertaForMaskedLM"``)."""
    if name_or_class in HEADS:
        return HEADS[name_or_class]
    for head in HEADS.values():
        if name_or_class in (head.torch_class, head.tf_class, head.flax_class):
            return head
    # Architectures written by the sibling RoBERTa classes map onto the same heads.
    alias = name_or_class.replace("XLMRoberta", "Roberta").replace("Roberta", "XLMRoberta")
    for head in HEADS.values():
        if alias in (head.torch_class, head.tf_class, head.flax_class):
            return head
    raise ValueError(f"unknown head {name_or_class!r}; known: {', '.join(HEADS)} or their class names")


def head_from_architectures(architectures: list[str] | None) -> Head | None:
    """The head named by a config's ``architectures`` field, or None when it names none we know."""
    for arch in architectures or ():
        try:
            return get_head(arch)
        except ValueError:
            continue
    return None
