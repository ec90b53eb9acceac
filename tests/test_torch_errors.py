"""xlmr_torch bad input: clear errors that name the offending value, never a deep torch traceback."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from tests.reference import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return xlmr_torch.XLMRobertaModel(tiny_config()).eval()  # vocab 99, max_position_embeddings 40


def _ids(*shape):
    return torch.full(shape, 5, dtype=torch.long)


def test_token_id_too_large_names_id_and_vocab(model):
    ids = _ids(2, 6)
    ids[1, 3] = 123
    with pytest.raises(ValueError, match=r"token id 123.*vocab_size=99"):
        model(ids)


def test_negative_token_id_names_it(model):
    ids = _ids(1, 4)
    ids[0, 0] = -7
    with pytest.raises(ValueError, match=r"token id -7.*vocab_size=99"):
        model(ids)


def test_sequence_too_long_names_length_and_limit(model):
    limit = model.config.max_sequence_length  # 40 - 1 - 1
    assert limit == 38
    model(_ids(1, limit))  # the longest allowed sequence works
    with pytest.raises(ValueError, match=r"sequence length 39 exceeds config.max_sequence_length=38"):
        model(_ids(1, limit + 1))


def test_sequence_too_long_with_cache_counts_past():
    decoder = xlmr_torch.XLMRobertaForCausalLM(tiny_config(is_decoder=True)).eval()
    with torch.no_grad():
        past = decoder(_ids(1, 38)).past_key_values
    with pytest.raises(ValueError, match=r"sequence length 39 \(38 cached \+ 1 new\)"):
        decoder(_ids(1, 1), past_key_values=past)


def test_both_or_neither_inputs(model):
    with pytest.raises(ValueError, match="both input_ids and inputs_embeds"):
        model(_ids(1, 3), inputs_embeds=torch.zeros(1, 3, 32))
    with pytest.raises(ValueError, match="either input_ids or inputs_embeds"):
        model()


def test_attention_mask_shape_mismatch(model):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\).*\(2, 6\)"):
        model(_ids(2, 6), attention_mask=torch.ones(2, 5, dtype=torch.long))


def test_token_type_id_out_of_range(model):
    types = torch.zeros(1, 4, dtype=torch.long)
    types[0, 2] = 2
    with pytest.raises(ValueError, match=r"token_type_ids holds 2.*type_vocab_size=2"):
        model(_ids(1, 4), token_type_ids=types)


def test_inputs_embeds_wrong_width(model):
    with pytest.raises(ValueError, match=r"hidden_size=32.*\(1, 3, 16\)"):
        model(inputs_embeds=torch.zeros(1, 3, 16))


def test_position_ids_out_of_range(model):
    with pytest.raises(ValueError, match=r"position_ids holds 40.*max_position_embeddings=40"):
        model(_ids(1, 3), position_ids=torch.tensor([[2, 3, 40]]))


def test_multiple_choice_needs_choice_axis():
    mc = xlmr_torch.XLMRobertaForMultipleChoice(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"\(batch, num_choices, seq\).*\(2, 5\)"):
        mc(_ids(2, 5))


def test_question_answering_needs_two_labels():
    qa = xlmr_torch.XLMRobertaForQuestionAnswering(tiny_config(num_labels=3)).eval()
    with pytest.raises(ValueError, match="num_labels == 2"):
        qa(_ids(1, 4))


def test_cross_attention_states_without_cross_layers():
    decoder = xlmr_torch.XLMRobertaForCausalLM(tiny_config(is_decoder=True)).eval()
    with pytest.raises(ValueError, match="add_cross_attention"):
        decoder(_ids(1, 4), encoder_hidden_states=torch.zeros(1, 2, 32))


def test_checks_do_not_break_compile(model):
    """The data-dependent checks are skipped while tracing (no graph break from .item())."""
    from xlmr_torch.modeling import XLMRobertaModel

    seen = []
    original = XLMRobertaModel._check_inputs

    def spy(self, *args):
        seen.append(torch.compiler.is_compiling())
        return original(self, *args)

    XLMRobertaModel._check_inputs = spy
    try:
        explained = torch._dynamo.explain(model)(_ids(1, 4))
    finally:
        XLMRobertaModel._check_inputs = original
    assert seen and all(seen)
    reasons = " ".join(str(b.reason) for b in explained.break_reasons)
    assert "item" not in reasons and "aminmax" not in reasons, reasons


def test_labels_as_numpy_or_list_match_tensors_and_bad_labels_name_the_argument():
    import numpy as np

    config = tiny_config(num_labels=3)
    model = xlmr_torch.XLMRobertaForSequenceClassification(config).eval()
    ids = _ids(2, 5)
    with torch.no_grad():
        expected = model(ids, labels=torch.tensor([0, 2])).loss
        assert torch.equal(model(ids, labels=np.array([0, 2])).loss, expected)
        assert torch.equal(model(ids, labels=[0, 2]).loss, expected)
        with pytest.raises(TypeError, match="labels"):
            model(ids, labels=["neg", object()])
    qa = xlmr_torch.XLMRobertaForQuestionAnswering(tiny_config(num_labels=2)).eval()
    with torch.no_grad(), pytest.raises(TypeError, match="start_positions"):
        qa(ids, start_positions={"a": 1}, end_positions=[1, 2])


def test_compiled_model_is_never_silent_on_bad_ids_and_labels():
    """Under torch.compile the values are unknown while checking: the graph asserts the ranges itself."""
    model = xlmr_torch.XLMRobertaForTokenClassification(tiny_config()).eval()  # num_labels 3
    compiled = torch.compile(model, dynamic=False)
    ids, labels = _ids(2, 6), torch.zeros(2, 6, dtype=torch.long)
    with torch.no_grad():
        assert torch.isfinite(compiled(ids, labels=labels).loss)
        bad_ids = ids.clone()
        bad_ids[1, 3] = 123
        with pytest.raises(RuntimeError, match=r"input_ids holds a value outside \[0, vocab_size=99\)"):
            compiled(bad_ids, labels=labels)
        bad_labels = labels.clone()
        bad_labels[0, 2] = 7
        with pytest.raises(RuntimeError, match=r"labels holds a value outside \[0, num_labels=3\)"):
            compiled(ids, labels=bad_labels)
        bad_labels[0, 2] = -100  # ignored, not out of range
        assert torch.isfinite(compiled(ids, labels=bad_labels).loss)
        with pytest.raises(TypeError, match="input_ids must hold integer ids"):
            compiled(ids.float())
