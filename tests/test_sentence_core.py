"""The framework-neutral half of the sentence encoders (xlmr/_sentence.py): pooling, Dense,
quantization and similarity against sentence-transformers' own modules and functions; directory
parsing and its errors; the packed and padded routes through a numpy stand-in backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.sentence_reference import sentence_transformers, train_tokenizer
from xlmr import _sentence as S
from xlmr import _sentence_layout as SL
from xlmr import _sentence_modules as SM
from xlmr._fileio import UnsafePathError

RNG = np.random.default_rng(0)


def _ragged(lengths, hidden=6, seed=0):
    rng = np.random.default_rng(seed)
    return SM.Ragged(rng.normal(size=(sum(lengths), hidden)).astype(np.float32), np.array(lengths))


def _padded(tokens: SM.Ragged):
    n, longest = len(tokens.lengths), int(tokens.lengths.max())
    x = np.zeros((n, longest, tokens.values.shape[1]), np.float32)
    mask = np.zeros((n, longest), np.int64)
    for i, t in enumerate(tokens.split()):
        x[i, : len(t)] = t
        mask[i, : len(t)] = 1
    return x, mask


# -- pooling ---------------------------------------------------------------------------------------
MODE_SETS = [(m,) for m in S.POOLING_MODES] + [
    ("cls", "mean", "max"),
    ("lasttoken", "weightedmean", "mean_sqrt_len_tokens"),
]


@pytest.mark.hf
@pytest.mark.parametrize("modes", MODE_SETS, ids=["+".join(m) for m in MODE_SETS])
@pytest.mark.parametrize("include_prompt", [True, False])
def test_pooling_matches_sentence_transformers(modes, include_prompt):
    sentence_transformers()
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    tokens = _ragged([5, 1, 9, 3, 2, 7])
    x, mask = _padded(tokens)
    prompt_length = 3  # longer than some sequences: they pool nothing
    ref = Pooling(6, pooling_mode=modes if len(modes) > 1 else modes[0], include_prompt=include_prompt)
    features = {"token_embeddings": torch.from_numpy(x), "attention_mask": torch.from_numpy(mask)}
    if not include_prompt:
        features["prompt_length"] = prompt_length
    expected = ref(features)["sentence_embedding"].numpy()
    ours = S.Pooling(6, modes, include_prompt)(tokens, prompt_length)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=1e-6)


def test_pooling_config_formats():
    legacy = {"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": True}
    pooling = S.Pooling.from_config(legacy)
    assert pooling.modes == ("cls", "max") and pooling.output_dimension == 16
    assert pooling.to_config()["pooling_mode_max_tokens"] is True  # legacy order: legacy keys
    modern = S.Pooling.from_config(
        {"embedding_dimension": 8, "pooling_mode": ["mean", "cls"], "include_prompt": False}
    )
    assert modern.modes == ("mean", "cls") and not modern.include_prompt
    assert modern.to_config() == {
        "embedding_dimension": 8,
        "pooling_mode": ["mean", "cls"],
        "include_prompt": False,
    }
    assert S.Pooling.from_config({"word_embedding_dimension": 8}).modes == ("mean",)
    with pytest.raises(ValueError, match="'median'"):
        S.Pooling.from_config({"embedding_dimension": 8, "pooling_mode": "median"})
    with pytest.raises(ValueError, match="'pooling_mode_median_tokens'"):
        S.Pooling.from_config({"embedding_dimension": 8, "pooling_mode_median_tokens": True})


# -- Dense, normalization, quantization, similarity ------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("activation", sorted(SM.ACTIVATIONS))
def test_dense_matches_torch(activation):
    sentence_transformers()
    import torch
    from sentence_transformers.base.modules import Dense

    torch.manual_seed(0)
    ref = Dense(6, 4, activation_function=getattr(torch.nn, activation)())
    x = (RNG.normal(size=(5, 6)) * 3).astype(np.float32)
    expected = ref({"sentence_embedding": torch.from_numpy(x)})["sentence_embedding"].detach().numpy()
    config = ref.get_config_dict()
    ours = S.Dense(
        ref.linear.weight.detach().numpy(), ref.linear.bias.detach().numpy(), config["activation_function"]
    )
    np.testing.assert_allclose(ours(x), expected, atol=2e-6, rtol=1e-6)


def test_dense_activation_rules(caplog):
    w = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="Hardswish"):
        S.Dense(w, None, "torch.nn.modules.activation.Hardswish")
    dense = S.Dense(w, None, "my_package.CustomActivation")  # sentence-transformers: Tanh, with a warning
    np.testing.assert_allclose(dense(np.ones((1, 3))), np.tanh([[3.0, 3.0]]), rtol=1e-6)
    assert "CustomActivation" in caplog.text
    assert dense.to_config()["activation_function"] == "my_package.CustomActivation"


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_dense_directory(tmp_path, weights):
    """2_Dense/: config.json and a torch Linear's weights; a missing activation is Tanh, null Identity."""
    w = RNG.normal(size=(3, 4)).astype(np.float32)
    b = RNG.normal(size=3).astype(np.float32)
    if weights.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file({"linear.weight": w, "linear.bias": b}, str(tmp_path / weights), metadata={"format": "pt"})
    else:
        torch = pytest.importorskip("torch")
        torch.save(
            {"linear.weight": torch.from_numpy(w), "linear.bias": torch.from_numpy(b)}, tmp_path / weights
        )
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    for config, activation in (({}, np.tanh), ({"activation_function": None}, lambda y: y)):
        (tmp_path / "config.json").write_text(json.dumps({"in_features": 4, "out_features": 3, **config}))
        dense = SL._read_dense(tmp_path)
        np.testing.assert_allclose(dense(x), activation(x @ w.T + b), rtol=1e-6, atol=1e-6)
    (tmp_path / "config.json").write_text(json.dumps({"in_features": 5, "out_features": 3}))
    with pytest.raises(ValueError, match="linear.weight has shape"):
        SL._read_dense(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"in_features": 4, "module_input_name": "token_embeddings"})
    )
    with pytest.raises(S.UnsupportedModuleError, match="token_embeddings"):
        SL._read_dense(tmp_path)


@pytest.mark.hf
def test_quantize_embeddings_bit_for_bit():
    sentence_transformers()
    from sentence_transformers.util.quantization import quantize_embeddings

    emb = RNG.normal(size=(150, 20)).astype(np.float32)
    calibration = RNG.normal(size=(300, 20)).astype(np.float32)
    ranges = np.vstack([emb.min(0) - 0.5, emb.max(0) + 0.5])
    for precision in S.PRECISIONS:
        for kwargs in ({}, {"ranges": ranges}, {"calibration_embeddings": calibration}):
            ours = S.quantize_embeddings(emb, precision, **kwargs)
            ref = quantize_embeddings(emb, precision=precision, **kwargs)
            assert ours.dtype == ref.dtype
            np.testing.assert_array_equal(ours, ref, err_msg=f"{precision} {list(kwargs)}")
    with pytest.raises(ValueError, match="float"):
        S.quantize_embeddings(emb.astype(np.int8), "binary")


@pytest.mark.hf
def test_similarity_functions_match_sentence_transformers():
    sentence_transformers()
    from sentence_transformers.util.similarity import SimilarityFunction

    a = RNG.normal(size=(4, 7)).astype(np.float32)
    b = RNG.normal(size=(30, 7)).astype(np.float32)  # > 25 rows: torch.cdist's mm route
    for name in S.SIMILARITY_FUNCTIONS:
        ref = SimilarityFunction.to_similarity_fn(name)(a, b).numpy()
        np.testing.assert_allclose(S.similarity(a, b, name), ref, rtol=1e-5, atol=1e-5, err_msg=name)
        pair = SimilarityFunction.to_similarity_pairwise_fn(name)(a, b[:4]).numpy()
        np.testing.assert_allclose(S.similarity_pairwise(a, b[:4], name), pair, rtol=1e-5, atol=1e-5)
    assert S.similarity(a[0], b, "dot").shape == (1, 30)
    assert SM.similarity_fn_name_of("dot_product") == "dot" and SM.similarity_fn_name_of(None) == "cosine"
    with pytest.raises(ValueError, match="'jaccard'"):
        S.similarity(a, b, "jaccard")
    np.testing.assert_allclose(np.linalg.norm(S.normalize(a), axis=1), 1.0, rtol=1e-6)
    assert np.all(S.normalize(np.zeros((1, 3))) == 0)


# -- directories -----------------------------------------------------------------------------------
def _st_dir(tmp_path: Path, modules: list[dict], pooling: dict | None = None) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "hidden_size": 8}))
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir(exist_ok=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling or {"word_embedding_dimension": 8})
    )
    return tmp_path


T = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
P = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}


def test_read_layout(tmp_path):
    layout = S.read_layout(_st_dir(tmp_path, [T, P]))
    assert [type(m).__name__ for m in layout.modules] == ["Pooling"] and layout.transformer_dir == tmp_path
    assert layout.prompts == {"query": "", "document": ""} and layout.max_seq_length is None
    (tmp_path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 77, "do_lower_case": True})
    )
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": {"query": "q: "}, "default_prompt_name": "query", "similarity_fn_name": "manhattan"}
        )
    )
    layout = S.read_layout(tmp_path)
    assert layout.max_seq_length == 77 and layout.do_lower_case
    assert layout.prompts["query"] == "q: " and layout.default_prompt_name == "query"
    assert layout.similarity_fn_name == "manhattan"


@pytest.mark.parametrize(
    "modules, fragment",
    [
        (
            [T, P, {"idx": 2, "path": "2_W", "type": "sentence_transformers.models.WordWeights"}],
            "WordWeights",
        ),
        ([T, P, {"idx": 2, "path": "2_X", "type": "my_code.CustomPooling"}], "my_code.CustomPooling"),
        ([dict(P, idx=0), dict(T, idx=1)], "first module"),
        ([T], "Pooling"),
    ],
)
def test_unsupported_modules_are_named(tmp_path, modules, fragment):
    with pytest.raises(S.UnsupportedModuleError, match=fragment):
        S.read_layout(_st_dir(tmp_path, modules))


def test_module_paths_stay_inside_the_directory(tmp_path):
    inside = tmp_path / "model"
    inside.mkdir()
    (tmp_path / "secret").mkdir()
    for bad in ("../secret", "/etc"):
        with pytest.raises(UnsafePathError, match="outside the checkpoint directory"):
            S.read_layout(_st_dir(inside, [T, dict(P, path=bad)]))
        with pytest.raises(UnsafePathError):
            S.read_layout(_st_dir(inside, [dict(T, path=bad), P]))


def test_directory_errors(tmp_path):
    d = _st_dir(tmp_path, [T, P], pooling={"embedding_dimension": 8, "pooling_mode": ["mean", "harmonic"]})
    with pytest.raises(ValueError, match="'harmonic'"):
        S.read_layout(d)
    d = _st_dir(tmp_path, [T, P])
    (d / "config_sentence_transformers.json").write_text(json.dumps({"default_prompt_name": "nope"}))
    with pytest.raises(ValueError, match="'nope'"):
        S.read_layout(d)
    (d / "config_sentence_transformers.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        S.read_layout(d)
    with pytest.raises(FileNotFoundError):
        S.read_layout(tmp_path / "missing")


def test_check_sentences():
    assert S.check_sentences("a") == (["a"], True)
    assert S.check_sentences(np.array(["a", "b"])) == (["a", "b"], False)
    assert S.check_sentences([]) == ([], False)
    with pytest.raises(TypeError, match=r"sentences\[1\] is a bytes"):
        S.check_sentences(["a", b"b"])
    with pytest.raises(TypeError, match="string or a list of strings"):
        S.check_sentences(5)


# -- the packed and padded routes through a numpy stand-in ----------------------------------------
class _Config:
    hidden_size = 8
    pad_token_id = 1
    max_position_embeddings = 66
    position_embedding_type = "absolute"
    max_sequence_length = 64


class NumpyEncoder(S.SentenceEncoderBase):
    """A stand-in backbone: each token's output depends on its id, its position in its own
    sequence and every token of that sequence -- as attention does -- and nothing else."""

    table = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)

    def _supports_packing(self) -> bool:
        return True

    def _forward(self, input_ids, attention_mask=None, segment_ids=None):
        groups = segment_ids if segment_ids is not None else attention_mask
        out = np.zeros((*input_ids.shape, 8), np.float32)
        for r in range(input_ids.shape[0]):
            for g in set(groups[r].tolist()) - {0}:
                where = np.flatnonzero(groups[r] == g)
                e = self.table[input_ids[r, where]]
                out[r, where] = e + e.mean(0) + 0.01 * np.arange(len(where))[:, None]
        return out

    def _to_tensor(self, array):
        return np.asarray(array)


@pytest.fixture(scope="module")
def numpy_encoders(tmp_path_factory):
    from xlmr.inputs import max_sequence_length

    tokenizer = train_tokenizer(tmp_path_factory.mktemp("tok"))
    config = _Config()
    assert max_sequence_length(config) == 64
    layout = S.Layout(
        transformer_dir=Path("."),
        modules=[S.Pooling(8, ("mean", "cls", "max", "lasttoken", "weightedmean")), S.Normalize()],
        max_seq_length=48,
        prompts={"query": "query: "},
    )

    class Model:
        pass

    model = Model()
    model.config = config
    return NumpyEncoder(model, tokenizer, layout, packed=True), NumpyEncoder(
        model, tokenizer, layout, packed=False
    )


def test_packed_and_padded_routes_agree(numpy_encoders, monkeypatch):
    packed, padded = numpy_encoders
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over a lazy dog le renard brun saute".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 40))) for _ in range(300)]
    monkeypatch.setattr(S, "CHUNK_TEXTS", 64)  # several chunks
    for kwargs in ({}, {"prompt_name": "query"}, {"batch_size": 3}, {"max_batch_tokens": 100}):
        a, b = packed.encode(texts, **kwargs), padded.encode(texts, **kwargs)
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
        assert packed.last_stats.tokens == padded.last_stats.tokens
        assert packed.last_stats.slots < padded.last_stats.slots
    # Input order, not the planner's: each text alone gives its own row.
    alone = np.stack([padded.encode(t) for t in texts[:20]])
    np.testing.assert_allclose(packed.encode(texts)[:20], alone, atol=1e-6)
    tokens_a = packed.encode(texts, output_value="token_embeddings")
    tokens_b = padded.encode(texts, output_value="token_embeddings")
    for x, y in zip(tokens_a, tokens_b):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert max(len(x) for x in tokens_a) == 48


def test_packed_batches_respect_the_budget(numpy_encoders, monkeypatch):
    packed, _ = numpy_encoders
    shapes = []
    forward = packed._forward
    monkeypatch.setattr(packed, "_forward", lambda ids, **kw: shapes.append(ids.shape) or forward(ids, **kw))
    packed.encode(["a b c"] * 50 + ["the quick brown fox " * 20] * 3, batch_size=2)
    assert shapes and all(rows * length <= 2 * 48 for rows, length in shapes), shapes
    assert all(length in (16, 32, 48) for _, length in shapes)
