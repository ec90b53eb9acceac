"""The seven XLM-R heads as data, so that no backend re-decides them.

For each head: its class name in each backend (HF's names), the prefix under which the
backbone's weights live in its checkpoints, whether the backbone has a pooler, the output
fields in the order ``return_dict=False`` gives them, the label arguments and the loss.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Head:
    """One head of the model family.

    Attributes:
        name: Short name used across the project (``"masked_lm"``...).
        torch_class / tf_class / flax_class: Class names in xlmr_torch / xlmr_tf / xlmr_flax (and HF).
        prefix: Attribute holding the backbone (``"roberta"``); empty for the bare model.
        add_pooling_layer: Whether the backbone of this head has a pooler.
        outputs: Output fields in tuple order (``loss`` first when labels are given).
        label_args: Call arguments carrying the targets.
        loss: Loss kind, see ``LOSSES``.
        output_class: HF's PyTorch output class name (TF / Flax prepend ``TF`` / ``Flax``).
        head_modules: Top-level attribute names of the head's own weights.
        input_rank: Rank of ``input_ids``: 2 (batch, seq), or 3 (batch, num_choices, seq) for
            multiple choice.
        decodes: Whether the head can run as a decoder with a key/value cache.
        prediction: Output field(s) that Keras losses, metrics and ``predict`` use, in order.
        packable: Whether the head accepts packed rows (``segment_ids``).
        per_sequence: Whether the head's outputs have one row per sequence (read from the first
            token) rather than one per token.
    """

    name: str
    torch_class: str
    tf_class: str
    flax_class: str
    prefix: str
    add_pooling_layer: bool
    outputs: tuple[str, ...]
    label_args: tuple[str, ...]
    loss: str | None
    output_class: str
    head_modules: tuple[str, ...]
    input_rank: int = 2
    decodes: bool = False
    prediction: tuple[str, ...] = ("logits",)
    packable: bool = False
    per_sequence: bool = False

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

_ENCODER_EXTRAS = ("hidden_states", "attentions")

HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head(
            name="base",
            torch_class="XLMRobertaModel",
            tf_class="TFXLMRobertaModel",
            flax_class="FlaxXLMRobertaModel",
            prefix="",
            add_pooling_layer=True,
            outputs=(
                "last_hidden_state",
                "pooler_output",
                "hidden_states",
                "past_key_values",
                "attentions",
                "cross_attentions",
            ),
            label_args=(),
            loss=None,
            output_class="BaseModelOutputWithPoolingAndCrossAttentions",
            head_modules=(),
            decodes=True,
            prediction=("last_hidden_state",),
            packable=True,
        ),
        Head(
            name="causal_lm",
            torch_class="XLMRobertaForCausalLM",
            tf_class="TFXLMRobertaForCausalLM",
            flax_class="FlaxXLMRobertaForCausalLM",
            prefix="roberta",
            add_pooling_layer=False,
            outputs=("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions"),
            label_args=("labels",),
            loss="causal_lm",
            output_class="CausalLMOutputWithCrossAttentions",
            head_modules=("lm_head",),
            decodes=True,
        ),
        Head(
            name="masked_lm",
            torch_class="XLMRobertaForMaskedLM",
            tf_class="TFXLMRobertaForMaskedLM",
            flax_class="FlaxXLMRobertaForMaskedLM",
            prefix="roberta",
            add_pooling_layer=False,
            outputs=("loss", "logits", *_ENCODER_EXTRAS),
            label_args=("labels",),
            loss="masked_lm",
            output_class="MaskedLMOutput",
            head_modules=("lm_head",),
            packable=True,
        ),
        Head(
            name="sequence_classification",
            torch_class="XLMRobertaForSequenceClassification",
            tf_class="TFXLMRobertaForSequenceClassification",
            flax_class="FlaxXLMRobertaForSequenceClassification",
            prefix="roberta",
            add_pooling_layer=False,
            outputs=("loss", "logits", *_ENCODER_EXTRAS),
            label_args=("labels",),
            loss="sequence_classification",
            output_class="SequenceClassifierOutput",
            head_modules=("classifier",),
            packable=True,
            per_sequence=True,
        ),
        Head(
            name="multiple_choice",
            torch_class="XLMRobertaForMultipleChoice",
            tf_class="TFXLMRobertaForMultipleChoice",
            flax_class="FlaxXLMRobertaForMultipleChoice",
            prefix="roberta",
            add_pooling_layer=True,
            outputs=("loss", "logits", *_ENCODER_EXTRAS),
            label_args=("labels",),
            loss="multiple_choice",
            output_class="MultipleChoiceModelOutput",
            head_modules=("classifier",),
            input_rank=3,
            per_sequence=True,
        ),
        Head(
            name="token_classification",
            torch_class="XLMRobertaForTokenClassification",
            tf_class="TFXLMRobertaForTokenClassification",
            flax_class="FlaxXLMRobertaForTokenClassification",
            prefix="roberta",
            add_pooling_layer=False,
            outputs=("loss", "logits", *_ENCODER_EXTRAS),
            label_args=("labels",),
            loss="token_classification",
            output_class="TokenClassifierOutput",
            head_modules=("classifier",),
            packable=True,
        ),
        Head(
            name="question_answering",
            torch_class="XLMRobertaForQuestionAnswering",
            tf_class="TFXLMRobertaForQuestionAnswering",
            flax_class="FlaxXLMRobertaForQuestionAnswering",
            prefix="roberta",
            add_pooling_layer=False,
            outputs=("loss", "start_logits", "end_logits", *_ENCODER_EXTRAS),
            label_args=("start_positions", "end_positions"),
            loss="span",
            output_class="QuestionAnsweringModelOutput",
            head_modules=("qa_outputs",),
            prediction=("start_logits", "end_logits"),
            packable=True,
        ),
    )
}

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
