"""xlmr_torch's opt-in fast CPU paths against float32: bfloat16 weights and matmuls, int8 Linear layers.

A small model (HF's classes, perturbed random weights, saved as a checkpoint) runs a realistic-ish
batch: 48-token rows of random ids, one padded. Every real token's output vector must point the
same way as float32's: cosine similarity >= 0.999 for bfloat16, >= 0.99 for int8 (issue 12).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import xlmr_torch  # noqa: E402
from tests.backends import torch_adapter as A  # noqa: E402
from tests.reference import hf_torch_model, make_inputs, tiny_config  # noqa: E402

pytestmark = pytest.mark.hf

SMALL = dict(vocab_size=250, hidden_size=128, num_attention_heads=4, intermediate_size=512)
SEQ = 48


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = tiny_config(**SMALL, max_position_embeddings=SEQ + 2)
    path = tmp_path_factory.mktemp("small")
    hf_torch_model("masked_lm", config).save_pretrained(path)
    inputs = make_inputs(config, "masked_lm", seq=SEQ, labels=False)
    inputs["input_ids"][1, SEQ // 2 :] = config.pad_token_id  # row 1: half padding
    inputs["attention_mask"][1, SEQ // 2 :] = 0
    return path, A.to_torch(inputs)


def _outputs(model, inputs) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    return {"last_hidden": out.hidden_states[-1].float().numpy(), "logits": out.logits.float().numpy()}


def _worst_cosine(actual: np.ndarray, expected: np.ndarray, mask: np.ndarray) -> float:
    a, e = actual[mask.astype(bool)], expected[mask.astype(bool)]  # (real tokens, features)
    cosine = (a * e).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(e, axis=-1))
    return float(cosine.min())


def test_bfloat16_from_pretrained(checkpoint):
    path, inputs = checkpoint
    reference = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(path)
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(path, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # cast once, while loading
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight  # still tied
    expected, actual = _outputs(reference, inputs), _outputs(model, inputs)
    for name in expected:
        cosine = _worst_cosine(actual[name], expected[name], inputs["attention_mask"].numpy())
        assert cosine >= 0.999, f"{name}: worst token cosine {cosine:.5f}"
    # The eager attention path (attention weights requested) agrees as well.
    with torch.no_grad():
        eager = model(**inputs, output_attentions=True).logits.float().numpy()
    assert _worst_cosine(eager, expected["logits"], inputs["attention_mask"].numpy()) >= 0.999


def test_int8_dynamic_quantization(checkpoint):
    path, inputs = checkpoint
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(path)
    int8 = model.quantize_dynamic_int8()
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(int8.roberta.encoder.layer[0].attention.self.query, quantized)
    assert isinstance(int8.lm_head.decoder, quantized) and not int8.training
    assert isinstance(model.roberta.encoder.layer[0].attention.self.query, torch.nn.Linear)  # untouched
    expected, actual = _outputs(model, inputs), _outputs(int8, inputs)
    for name in expected:
        cosine = _worst_cosine(actual[name], expected[name], inputs["attention_mask"].numpy())
        assert cosine >= 0.99, f"{name}: worst token cosine {cosine:.5f}"
