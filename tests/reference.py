"""Independent references: tiny random HF transformers 4.57.6 models and the inputs to feed them.

Everything here builds on HF's PyTorch classes; a backend is always compared with these,
never with itself.
"""

from __future__ import annotations

import numpy as np

from xlmr import HEADS, XLMRobertaConfig
from xlmr import weights as W

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    num_labels=3,
)
ATOL = 1e-5


def tiny_config(**overrides) -> XLMRobertaConfig:
    kw = dict(TINY, **overrides)
    return XLMRobertaConfig(**kw)


def head_config(head: str, **overrides) -> XLMRobertaConfig:
    """``tiny_config`` fit for ``head``: question answering needs exactly two labels (start, end)."""
    if head == "question_answering":
        overrides.setdefault("num_labels", 2)
    return tiny_config(**overrides)


def make_inputs(
    config: XLMRobertaConfig,
    head: str,
    batch: int = 2,
    seq: int = 7,
    seed: int = 0,
    labels: bool = True,
    num_choices: int = 3,
) -> dict[str, np.ndarray]:
    """A padded batch (row 1 ends in padding) with token types and, optionally, labels."""
    rng = np.random.default_rng(seed)
    shape = (batch, num_choices, seq) if head == "multiple_choice" else (batch, seq)
    ids = rng.integers(3, config.vocab_size, size=shape, dtype=np.int64)
    ids[..., 0] = config.bos_token_id
    mask = np.ones(shape, dtype=np.int64)
    if batch > 1:
        ids[1, ..., seq - 2 :] = config.pad_token_id
        mask[1, ..., seq - 2 :] = 0
    types = rng.integers(0, config.type_vocab_size, size=shape, dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if labels:
        n = config.num_labels
        if head in ("causal_lm", "masked_lm"):
            lab = rng.integers(0, config.vocab_size, size=(batch, seq), dtype=np.int64)
            lab[:, 1] = -100
            inputs["labels"] = lab
        elif head == "sequence_classification":
            inputs["labels"] = rng.integers(0, n, size=(batch,), dtype=np.int64)
        elif head == "multiple_choice":
            inputs["labels"] = rng.integers(0, num_choices, size=(batch,), dtype=np.int64)
        elif head == "token_classification":
            lab = rng.integers(0, n, size=(batch, seq), dtype=np.int64)
            lab[:, 0] = -100
            inputs["labels"] = lab
        elif head == "question_answering":
            inputs["start_positions"] = rng.integers(0, seq, size=(batch,), dtype=np.int64)
            inputs["end_positions"] = rng.integers(0, seq + 3, size=(batch,), dtype=np.int64)
    return inputs


def hf_torch_model(head: str, config: XLMRobertaConfig, seed: int = 0, perturb: float = 0.1):
    """A tiny HF PyTorch model of ``head`` with every weight (biases, layer norms too) perturbed."""
    import torch
    import transformers

    hf_config = transformers.XLMRobertaConfig(**config.to_dict())
    hf_config._attn_implementation = "eager"
    cls = getattr(transformers, HEADS[head].torch_class)
    torch.manual_seed(seed)
    model = cls(hf_config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * perturb)
    return model


def canonical_state_dict(hf_model, config: XLMRobertaConfig, head: str) -> dict[str, np.ndarray]:
    """The canonical numpy state dict (tied aliases removed) of an HF PyTorch model."""
    sd = {k: v.detach().cpu().numpy().copy() for k, v in hf_model.state_dict().items()}
    return W.resolve_ties(W.canonicalize(sd), config, head)


def hf_torch_forward(hf_model, inputs: dict[str, np.ndarray], **kwargs) -> dict:
    """Run an HF PyTorch model; outputs as numpy (tuples of arrays stay tuples)."""
    import torch

    feed = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = hf_model(**feed, **kwargs, return_dict=True)
    return to_numpy_tree(dict(out))


def to_numpy_tree(obj):
    if isinstance(obj, dict):
        return {k: to_numpy_tree(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, tuple | list):
        return tuple(to_numpy_tree(v) for v in obj)
    if hasattr(obj, "detach"):
        return obj.detach().cpu().float().numpy()
    if hasattr(obj, "numpy"):
        return np.asarray(obj.numpy())
    if hasattr(obj, "to_legacy_cache"):
        return to_numpy_tree(obj.to_legacy_cache())
    return np.asarray(obj)


def assert_trees_close(actual, expected, atol=ATOL, rtol=0.0, path="output"):
    """Compare nested outputs field by field; the message names the field and the max error."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a mapping, got {type(actual).__name__}"
        missing = set(expected) - set(actual)
        assert not missing, f"{path}: missing fields {sorted(missing)}"
        for k in expected:
            assert_trees_close(actual[k], expected[k], atol, rtol, f"{path}.{k}")
        return
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple | list), f"{path}: expected a tuple, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_trees_close(a, e, atol, rtol, f"{path}[{i}]")
        return
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{path}: shape {a.shape} != {e.shape}"
    err = float(np.max(np.abs(a - e))) if a.size else 0.0
    assert np.allclose(a, e, atol=atol, rtol=rtol), f"{path}: max abs error {err:.3g} > atol {atol}"
