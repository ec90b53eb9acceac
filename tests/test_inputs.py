"""One input checker, one loss policy: the same bad input gets the same error in every backend.

Each case runs through the three backends (through their adapters); the exception type and the
message text must be identical, and equal to what ``xlmr.inputs`` / ``xlmr.losses`` say for it.
An all-ignored batch has loss 0.0 and a zero gradient everywhere (HF PyTorch and TF give NaN).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends import BACKENDS, get_adapter
from tests.reference import head_config, make_inputs, tiny_config
from xlmr import HEADS
from xlmr.inputs import array_info, check_inputs
from xlmr.losses import check_labels

LIMIT = tiny_config().max_sequence_length  # 38 with max_position_embeddings=40


def _ids(*shape, value=5, dtype=np.int64):
    ids = np.full(shape, value, dtype=dtype)
    ids[..., 0] = 0
    return ids


# (case id, head, config overrides, inputs)
CASES = [
    ("id-too-large", "base", {}, {"input_ids": np.array([[0, 5, 123, 2]])}),
    ("id-negative", "masked_lm", {}, {"input_ids": np.array([[0, -7, 6, 2]])}),
    ("float-ids", "base", {}, {"input_ids": np.array([[0.0, 5.0, 6.0, 2.0]], np.float32)}),
    ("empty-sequence", "base", {}, {"input_ids": np.zeros((2, 0), np.int64)}),
    ("too-long", "sequence_classification", {}, {"input_ids": _ids(1, LIMIT + 1)}),
    ("mask-shape", "base", {}, {"input_ids": _ids(2, 6), "attention_mask": np.ones((2, 5), np.int64)}),
    (
        "token-type-range",
        "token_classification",
        {},
        {"input_ids": _ids(1, 4), "token_type_ids": np.array([[0, 1, 2, 0]])},
    ),
    ("token-type-shape", "base", {}, {"input_ids": _ids(2, 4), "token_type_ids": np.zeros((2, 3), np.int64)}),
    ("position-range", "base", {}, {"input_ids": _ids(1, 3), "position_ids": np.array([[2, 3, 40]])}),
    ("head-mask-shape", "base", {}, {"input_ids": _ids(1, 3), "head_mask": np.ones((3,), np.float32)}),
    ("choices-rank", "multiple_choice", {}, {"input_ids": _ids(2, 5)}),
    (
        "cross-attention-off",
        "base",
        {},
        {"input_ids": _ids(2, 3), "encoder_hidden_states": np.zeros((2, 4, 32), np.float32)},
    ),
    (
        "label-range",
        "token_classification",
        {},
        {"input_ids": _ids(1, 4), "labels": np.array([[0, 1, 7, -100]])},
    ),
    ("label-shape", "sequence_classification", {}, {"input_ids": _ids(2, 4), "labels": np.array([0, 1, 2])}),
    ("label-float", "masked_lm", {}, {"input_ids": _ids(1, 4), "labels": np.full((1, 4), 1.5, np.float32)}),
    (
        "span-missing-end",
        "question_answering",
        {"num_labels": 2},
        {"input_ids": _ids(2, 4), "start_positions": np.array([1, 2])},
    ),
]


def _expected_error(head: str, overrides: dict, inputs: dict) -> BaseException:
    """What the core checker says about ``inputs`` (the reference every backend must repeat)."""
    config = head_config(head, **overrides)
    spec = HEADS[head]
    label_names = ("labels", "start_positions", "end_positions")
    model_inputs = {k: array_info(v) for k, v in inputs.items() if k not in label_names}
    try:
        shape = check_inputs(config, spec, **model_inputs)
        labels = {k: array_info(v) for k, v in inputs.items() if k in label_names}
        if labels:
            check_labels(spec, config, labels, batch=inputs["input_ids"].shape[0], seq=shape.seq,
                         num_choices=shape.num_choices)  # fmt: skip
    except (ValueError, TypeError) as err:
        return err
    raise AssertionError("the core checker accepts this case; it is not a bad input")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_error_in_every_backend(case):
    _, head, overrides, inputs = case
    expected = _expected_error(head, overrides, inputs)
    seen = {}
    for backend in BACKENDS:
        adapter = get_adapter(backend)
        model = adapter.build(head, head_config(head, **overrides))
        with pytest.raises((ValueError, TypeError)) as err:
            adapter.forward(model, inputs)
        seen[backend] = (type(err.value), str(err.value))
    want = (type(expected), str(expected))
    for backend, got in seen.items():
        assert got == want, (
            f"{backend}: {got[0].__name__}: {got[1]!r}\n   expected {want[0].__name__}: {want[1]!r}"
        )


@pytest.mark.parametrize(
    "head", ["masked_lm", "token_classification", "multiple_choice", "question_answering"]
)
def test_all_ignored_batch_has_zero_loss_and_gradient(head):
    """Every target ignored: loss exactly 0.0 and every gradient exactly 0 in all three backends."""
    config = head_config(head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    inputs = make_inputs(config, head)
    if head == "question_answering":
        seq = inputs["input_ids"].shape[-1]
        inputs["start_positions"] = np.full((2,), seq + 4)  # clamped to seq, which is ignored
        inputs["end_positions"] = np.full((2,), seq)
    else:
        inputs["labels"] = np.full_like(inputs["labels"], -100)
    for backend in BACKENDS:
        adapter = get_adapter(backend)
        model = adapter.build(head, config)
        loss, grads = adapter.loss_and_grads(model, inputs)
        assert loss == 0.0, f"{backend}: loss {loss}"
        worst = max(float(np.max(np.abs(g))) for g in grads.values())
        assert worst == 0.0, f"{backend}: largest gradient {worst}"


@pytest.mark.parametrize(
    "labels", [np.array([0, 2]), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)]
)
def test_problem_type_written_back_in_every_backend(labels):
    """The inferred problem type is stored on the config, in all three backends alike."""
    expected = "single_label_classification" if labels.dtype.kind == "i" else "multi_label_classification"
    for backend in BACKENDS:
        adapter = get_adapter(backend)
        config = head_config("sequence_classification")
        model = adapter.build("sequence_classification", config)
        inputs = dict(make_inputs(config, "sequence_classification", labels=False), labels=labels)
        adapter.forward(model, inputs)
        assert model.config.problem_type == expected, backend
