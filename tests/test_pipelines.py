"""Task pipelines (``xlmr.pipeline``) against HF transformers 4.57.6's own ``pipeline()`` (PyTorch).

The same tiny checkpoints with perturbed weights run in HF's PyTorch pipeline and in each xlmr
backend; the tokenizer is trained here on text this file writes. Labels, tokens, words and answers
must be equal, scores within 1e-5. Character offsets must equal HF's except where HF's point at the
wrong characters (the inserted ``▁``, ``<mask>``, leading control characters: README, Tokenizers);
there the test shows that ours cut exactly the word or answer out of the input.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import xlmr
from tests.backends import BACKENDS, get_adapter
from tests.reference import canonical_state_dict, hf_torch_model, tiny_config

pytestmark = pytest.mark.hf  # everything here runs HF's PyTorch models (the reference) or their weights

REPO = Path(__file__).resolve().parents[1]
SCORE_ATOL = 1e-5

TRAIN = [
    "Angela Merkel visited Paris in May with Emmanuel Macron.",
    "The cat sat on the mat, and the dog slept in the garden.",
    "Marie Curie was born in Warsaw and worked in Paris.",
    "Der Hund schläft im Garten, die Katze auf dem Sofa.",
    "Le chat dort sur le canapé près de la fenêtre.",
    "El perro come en la cocina de la casa de María.",
    "Москва и Берлин большие города.",
    "Where does the cat sleep? Who was born in Warsaw?",
    "John Smith lives in New York and works for the United Nations.",
    "Tokyo, Lisbon and Nairobi are capitals.",
]
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
MODEL_CONFIG = {
    "masked_lm": {},
    "masked_lm_wide": {"vocab_size": 400},  # a model vocabulary padded beyond the tokenizer's
    "sequence_classification": {"id2label": {0: "neg", 1: "neu", 2: "pos"}, "num_labels": 3},
    "multi_label": {
        "id2label": {0: "a", 1: "b", 2: "c"},
        "num_labels": 3,
        "problem_type": "multi_label_classification",
    },
    "regression": {"num_labels": 1, "problem_type": "regression"},
    "one_label": {"num_labels": 1},
    "token_classification": {"id2label": NER_LABELS, "num_labels": len(NER_LABELS)},
    "question_answering": {"num_labels": 2},
    "base": {},
}
HEAD_OF = {"masked_lm_wide": "masked_lm", "multi_label": "sequence_classification",
           "regression": "sequence_classification", "one_label": "sequence_classification"}  # fmt: skip
MAX_LENGTH = 128  # tokenizer's model_max_length; the models take 128 tokens (max_position_embeddings 130)


# -- the world: one tokenizer, one HF model per head, our models loaded from them --------------------
class World:
    def __init__(self, directory: Path) -> None:
        import transformers

        self.directory = directory
        self.tokenizer = xlmr.XLMRobertaTokenizerFast.from_pretrained(directory, model_max_length=MAX_LENGTH)
        self.hf_tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(
            str(directory), model_max_length=MAX_LENGTH
        )
        self._hf: dict = {}
        self._ours: dict = {}

    def config(self, kind: str):
        options = dict(vocab_size=len(self.tokenizer), max_position_embeddings=MAX_LENGTH + 2)
        return tiny_config(**{**options, **MODEL_CONFIG[kind]})

    def hf_model(self, kind: str):
        if kind not in self._hf:
            seed = list(MODEL_CONFIG).index(kind)  # the same weights whichever tests run
            self._hf[kind] = hf_torch_model(HEAD_OF.get(kind, kind), self.config(kind), seed=seed)
        return self._hf[kind]

    def ours(self, backend: str, kind: str):
        if (backend, kind) not in self._ours:
            adapter = get_adapter(backend)
            head, config = HEAD_OF.get(kind, kind), self.config(kind)
            state = canonical_state_dict(self.hf_model(kind), config, head)
            self._ours[backend, kind] = adapter.load(adapter.build(head, config), state)
        return self._ours[backend, kind]

    def hf_pipeline(self, task: str, kind: str, tokenizer=None, **options):
        import transformers

        return transformers.pipeline(
            task,
            model=self.hf_model(kind),
            tokenizer=tokenizer or self.hf_tokenizer,
            framework="pt",
            **options,
        )

    def pipeline(self, task: str, kind: str, backend: str, tokenizer=None, **options):
        return xlmr.pipeline(task, self.ours(backend, kind), tokenizer=tokenizer or self.tokenizer, **options)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    try:
        import transformers.pipelines  # noqa: F401
    except ValueError as err:  # Keras 3 without tf-keras: HF's TF side refuses to import
        pytest.skip(f"HF transformers' pipelines cannot be imported here: {err}")
    assert transformers.__version__ == "4.57.6"
    directory = tmp_path_factory.mktemp("pipelines") / "tokenizer"
    xlmr.XLMRobertaTokenizer.train(TRAIN * 6, vocab_size=200, save_directory=directory)
    return World(directory)


# -- comparison ------------------------------------------------------------------------------------
def norm(text: str) -> str:
    """Text as the tokens spell it: NFKC, ``▁`` as space, whitespace runs collapsed, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).replace("\u2581", " ").split())


def assert_same(ours, theirs, path: str = "result") -> None:
    """Equal structure, keys and values; floats within SCORE_ATOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} instead of a dict"
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)} != HF's {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list | tuple):
        assert isinstance(ours, list | tuple), f"{path}: {type(ours).__name__} instead of a list"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items, HF {len(theirs)}: {ours} vs {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float | np.floating) and not isinstance(theirs, bool):
        assert abs(float(ours) - float(theirs)) <= SCORE_ATOL, f"{path}: {ours} vs HF {theirs}"
    elif isinstance(theirs, np.ndarray):
        np.testing.assert_allclose(ours, theirs, atol=SCORE_ATOL, rtol=0, err_msg=path)
    else:
        assert ours == theirs, f"{path}: {ours!r} vs HF {theirs!r}"


def assert_entities(ours: list[dict], theirs: list[dict], text: str, repaired: list | None = None) -> None:
    """Entities equal to HF's; where the offsets differ (``repaired`` given), ours cut exactly the word
    out of ``text``. With overlapping windows HF may even keep another entity there: its offsets make
    the inserted "▁" and the letter after it the same span, and the overlap rule keeps either one;
    then HF's entity is shown wrong (its span does not spell its word)."""
    assert len(ours) == len(theirs), f"{len(ours)} entities, HF {len(theirs)}:\n{ours}\n{theirs}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert list(a) == list(b), (a, b)
        fields = lambda e: {k: v for k, v in e.items() if k not in ("start", "end")}  # noqa: E731
        if (a["start"], a["end"], a["word"]) == (b["start"], b["end"], b["word"]):
            assert_same(fields(a), fields(b), f"entity[{i}]")
            continue
        assert repaired is not None, f"entity[{i}]: {a} != HF {b}"
        assert norm(text[a["start"] : a["end"]]) == norm(a["word"]), (text, a)
        if a["word"] == b["word"]:
            assert_same(fields(a), fields(b), f"entity[{i}]")
        else:  # HF kept another entity at this place: one whose span is not its word
            assert norm(text[b["start"] : b["end"]]) != norm(b["word"]), (text, a, b)
        repaired.append((a, b, text))


# -- fill-mask -------------------------------------------------------------------------------------
FILL_TEXTS = [
    "The cat sat on the <mask>.",
    "Marie Curie was born in <mask> and worked in <mask>.",
    "<mask> schläft im Garten.",
]
FILL_CASES = [
    {},
    {"top_k": 2},
    {"top_k": 40},
    {"targets": ["▁Paris", "▁the", "cat", "zzz"]},
    {"targets": "▁the"},
    {"targets": ["▁Paris", "▁the"], "top_k": 5},
    {"tokenizer_kwargs": {"truncation": True}},
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_mask_matches_hf(world, backend):
    ours = world.pipeline("fill-mask", "masked_lm", backend)
    theirs = world.hf_pipeline("fill-mask", "masked_lm")
    for options in FILL_CASES:
        for text in FILL_TEXTS:
            assert_same(ours(text, **options), theirs(text, **options), f"{text!r} {options}")
    # lists (batched), a one-item list, construction-time options
    assert_same(ours(FILL_TEXTS, batch_size=2), theirs(FILL_TEXTS, batch_size=2))
    assert_same(ours(FILL_TEXTS[:1]), theirs(FILL_TEXTS[:1]))
    ours3 = world.pipeline("fill-mask", "masked_lm", backend, top_k=3, batch_size=1)
    theirs3 = world.hf_pipeline("fill-mask", "masked_lm", top_k=3)
    assert_same(ours3(FILL_TEXTS), theirs3(FILL_TEXTS))
    # predictions past the tokenizer's vocabulary decode to nothing, as with HF's fast tokenizer
    wide = world.pipeline("fill-mask", "masked_lm_wide", backend)
    got = wide(FILL_TEXTS[0], top_k=40)
    assert any(p["token"] >= len(world.tokenizer) for p in got)
    assert_same(got, world.hf_pipeline("fill-mask", "masked_lm_wide")(FILL_TEXTS[0], top_k=40))


def test_fill_mask_torch_fused_kernel_and_fallbacks(world):
    """PyTorch runs one unpadded text through the fused encoder-layer kernel: its output equals the
    layers' modules; a forward hook on a layer's module (a probe, an adapter) turns it off and is
    honoured as HF's model honours it; weights changed in place after the pipeline was built are
    used (the fused query/key/value weights are rebuilt)."""
    torch = pytest.importorskip("torch")
    from xlmr_torch import tasks

    ours, theirs = world.ours("torch", "masked_lm"), world.hf_model("masked_lm")
    layers = ours.roberta.encoder.layer
    fused = tasks._FusedLayers(ours.roberta)
    ids = torch.tensor([world.tokenizer(FILL_TEXTS[0])["input_ids"]])
    with torch.inference_mode():
        hidden = ours.roberta.embeddings(input_ids=ids)
        assert fused.usable(hidden, None)
        assert not fused.usable(hidden, torch.zeros(1, 1, 1, ids.shape[1]))  # a mask: the modules
        expected = hidden
        for layer in layers:
            expected = layer(expected, None)[0]
        got = fused.run(hidden, len(layers))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5, rtol=0)
    assert not fused.usable(hidden, None)  # outside inference mode (gradients on): the modules

    fill = world.pipeline("fill-mask", "masked_lm", "torch")
    reference = world.hf_pipeline("fill-mask", "masked_lm")
    plain = fill(FILL_TEXTS[0], top_k=3)
    name = "roberta.encoder.layer.0.intermediate.dense"
    handles = [
        m.get_submodule(name).register_forward_hook(lambda mod, args, out: out * 2) for m in (ours, theirs)
    ]
    try:
        with torch.inference_mode():
            assert not fused.usable(hidden, None)
        hooked = fill(FILL_TEXTS[0], top_k=3)
        assert_same(hooked, reference(FILL_TEXTS[0], top_k=3))
        assert [p["score"] for p in hooked] != [p["score"] for p in plain]
    finally:
        for handle in handles:
            handle.remove()

    name = "roberta.encoder.layer.0.attention.self.query.weight"
    saved = ours.get_parameter(name).detach().clone()
    try:
        with torch.no_grad():
            for model in (ours, theirs):
                model.get_parameter(name).mul_(3.0)
        changed = fill(FILL_TEXTS[0], top_k=3)
        assert_same(changed, reference(FILL_TEXTS[0], top_k=3))
        assert [p["score"] for p in changed] != [p["score"] for p in plain]
    finally:
        with torch.no_grad():
            for model in (ours, theirs):
                model.get_parameter(name).copy_(saved)
    assert_same(fill(FILL_TEXTS[0], top_k=3), plain)


# -- text classification ---------------------------------------------------------------------------
CLASSIFY = ["The cat sat on the mat.", "Москва и Берлин.", "Where does the dog sleep?"]
PAIR = {"text": "Who was born in Warsaw?", "text_pair": "Marie Curie was born in Warsaw."}
CLASSIFY_CASES = [
    {},
    {"top_k": None},
    {"top_k": 2},
    {"top_k": 1},
    {"function_to_apply": "sigmoid"},
    {"function_to_apply": "none", "top_k": None},
    {"function_to_apply": "softmax", "top_k": 2},
    {"truncation": True},
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_classification_matches_hf(world, backend):
    ours = world.pipeline("text-classification", "sequence_classification", backend)
    theirs = world.hf_pipeline("text-classification", "sequence_classification")
    for options in CLASSIFY_CASES:
        for inputs in (CLASSIFY[0], CLASSIFY, PAIR, [PAIR, dict(PAIR, text_pair="Paris.")]):
            assert_same(ours(inputs, **options), theirs(inputs, **options), f"{inputs!r} {options}")
    assert_same(ours(CLASSIFY, batch_size=2), theirs(CLASSIFY, batch_size=2))
    # the default function by problem_type / num_labels: sigmoid, none, sigmoid
    for kind in ("multi_label", "regression", "one_label"):
        ours = world.pipeline("text-classification", kind, backend)
        theirs = world.hf_pipeline("text-classification", kind)
        for options in ({}, {"top_k": None}, {"function_to_apply": "softmax", "top_k": None}):
            inputs = [CLASSIFY[0], PAIR]
            assert_same(ours(inputs, **options), theirs(inputs, **options), f"{kind} {options}")
    # options given at construction (HF keeps the one-item list for a plain string called without top_k)
    ours = world.pipeline("sentiment-analysis", "sequence_classification", backend, top_k=None)
    theirs = world.hf_pipeline("sentiment-analysis", "sequence_classification", top_k=None)
    assert_same(ours(CLASSIFY[0]), theirs(CLASSIFY[0]))
    assert_same(ours(CLASSIFY), theirs(CLASSIFY))
    with pytest.warns(UserWarning, match="return_all_scores"):
        got = ours(CLASSIFY[1], return_all_scores=True)
    with pytest.warns(UserWarning):
        assert_same(got, theirs(CLASSIFY[1], return_all_scores=True))


# -- token classification --------------------------------------------------------------------------
NER_TEXTS = [
    "Angela Merkel visited Paris in May with Emmanuel Macron.",
    "John Smith lives in New York.",
    "Marie  Curie was born in Warsaw, worked in Paris.",  # two spaces: a "▁" token of its own
    "Tokyo, Lisbon and Nairobi are capitals of Japan.",
]
STRATEGIES = ("none", "simple", "first", "average", "max")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_token_classification_matches_hf(world, backend, strategy):
    """Only the "▁" HF gives the next character to may differ (ours: the empty span)."""
    ours = world.pipeline("token-classification", "token_classification", backend)
    theirs = world.hf_pipeline("token-classification", "token_classification")
    repaired: list = []
    for options in ({}, {"ignore_labels": []}, {"ignore_labels": ["O", "B-LOC"]}):
        for text in NER_TEXTS:
            with pytest.warns() if strategy in ("first", "average", "max") else _nothing():
                expected = theirs(text, aggregation_strategy=strategy, **options)
            got = ours(text, aggregation_strategy=strategy, **options)
            assert_entities(got, expected, text, repaired)
    for a, _, _ in repaired:  # every repaired span is an inserted "▁" standing alone (empty span)
        assert a["start"] == a["end"] and norm(a["word"]) == "", a
    # lists, batched; construction-time options
    ours = world.pipeline("ner", "token_classification", backend, aggregation_strategy=strategy, batch_size=3)
    theirs = world.hf_pipeline("ner", "token_classification", aggregation_strategy=strategy)
    with pytest.warns() if strategy in ("first", "average", "max") else _nothing():
        expected = theirs(NER_TEXTS, batch_size=3)
    for got, exp, text in zip(ours(NER_TEXTS), expected, NER_TEXTS):
        assert_entities(got, exp, text, [])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_classification_stride_and_pre_split_words(world, backend):
    """Long texts in overlapping windows (``stride``); ``is_split_into_words`` with a delimiter."""
    import transformers

    short = xlmr.XLMRobertaTokenizerFast.from_pretrained(world.directory, model_max_length=24)
    hf_short = transformers.XLMRobertaTokenizerFast.from_pretrained(str(world.directory), model_max_length=24)
    ours = world.pipeline("token-classification", "token_classification", backend, tokenizer=short)
    theirs = world.hf_pipeline("token-classification", "token_classification", tokenizer=hf_short)
    text = " ".join(NER_TEXTS)
    for strategy in ("simple", "first", "max", "average"):
        with pytest.warns() if strategy != "simple" else _nothing():
            expected = theirs(text, aggregation_strategy=strategy, stride=8)
        assert_entities(ours(text, aggregation_strategy=strategy, stride=8), expected, text, [])
    ours = world.pipeline("token-classification", "token_classification", backend)
    theirs = world.hf_pipeline("token-classification", "token_classification")
    words = ["John", "Smith", "lives", "in", "New", "York"]
    for strategy in ("none", "simple"):
        for delimiter in (None, "  "):
            opts = dict(is_split_into_words=True, aggregation_strategy=strategy, delimiter=delimiter)
            joined = (delimiter or " ").join(words)
            got, exp = ours(words, **opts), theirs(words, **opts)
            assert len(got) == len(exp) == 1  # HF: one list of words gives a list of one result
            assert_entities(got[0], exp[0], joined, [])
            got, exp = ours([words, words[:3]], **opts), theirs([words, words[:3]], **opts)
            assert len(got) == len(exp) == 2
            assert_entities(got[1], exp[1], (delimiter or " ").join(words[:3]), [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_classification_repaired_offsets(world, backend):
    """Where HF's offsets are wrong (leading control character, ``<mask>``, an inserted ``▁``) ours are
    the characters of the word: ``text[start:end]`` spells the entity's word."""
    ours = world.pipeline("token-classification", "token_classification", backend)
    theirs = world.hf_pipeline("token-classification", "token_classification")
    texts = ["\x1fJohn Smith in Lisbon", "Marie <mask> in Lisbon", "Angela in Paris"]
    repaired: list = []
    for text in texts:
        for strategy in ("none", "simple"):  # (word-level strategies read HF's shifted offsets too)
            assert_entities(
                ours(text, aggregation_strategy=strategy, ignore_labels=[]),
                theirs(text, aggregation_strategy=strategy, ignore_labels=[]),
                text,
                repaired,
            )
    assert any(a["word"] == "<mask>" for a, _, _ in repaired), repaired
    assert len(repaired) >= 10, repaired  # the control character shifts every HF span of its text
    # HF's spans there hold other characters: the control character, the space before <mask>, the
    # next word's first letter
    for a, b, text in repaired:
        assert text[b["start"] : b["end"]] != text[a["start"] : a["end"]], (text, a, b)


# -- question answering ----------------------------------------------------------------------------
CONTEXT = (
    "Marie Curie was born in Warsaw and worked in Paris. Angela Merkel visited Paris in May. "
    "John Smith lives in New York and works for the United Nations. The cat sat on the mat."
)
QUESTIONS = ["Who was born in Warsaw?", "Where does John Smith live?", "Where does the cat sleep?"]
QA_CASES = [
    {},
    {"top_k": 3},
    {"max_answer_len": 3, "top_k": 2},
    {"handle_impossible_answer": True},
    {"handle_impossible_answer": True, "top_k": 4},
    {"align_to_words": False, "top_k": 3},
    {"max_seq_len": 48, "doc_stride": 16},
    {"max_seq_len": 40, "doc_stride": 10, "top_k": 5},
    {"max_seq_len": 64, "max_question_len": 4},
    {"doc_stride": 20},
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_question_answering_matches_hf(world, backend):
    ours = world.pipeline("question-answering", "question_answering", backend)
    theirs = world.hf_pipeline("question-answering", "question_answering")
    for options in QA_CASES:
        got = ours(question=QUESTIONS[0], context=CONTEXT, **options)
        assert_same(got, theirs(question=QUESTIONS[0], context=CONTEXT, **options), f"{options}")
        for answer in got if isinstance(got, list) else [got]:
            assert CONTEXT[answer["start"] : answer["end"]] == answer["answer"]
    # lists of questions (one context, or one each), dicts, batches of windows
    assert_same(ours(question=QUESTIONS, context=CONTEXT), theirs(question=QUESTIONS, context=CONTEXT))
    contexts = [CONTEXT, CONTEXT[:60], CONTEXT[40:]]
    assert_same(
        ours(question=QUESTIONS, context=contexts, max_seq_len=40, doc_stride=12, batch_size=2),
        theirs(question=QUESTIONS, context=contexts, max_seq_len=40, doc_stride=12, batch_size=2),
    )
    examples = [{"question": q, "context": c} for q, c in zip(QUESTIONS, contexts)]
    assert_same(ours(examples, top_k=2), theirs(question=QUESTIONS, context=contexts, top_k=2))
    assert_same(ours(examples[0]), theirs(examples[0]))
    assert_same(ours(QUESTIONS[1], CONTEXT), theirs(QUESTIONS[1], CONTEXT))


@pytest.mark.parametrize("backend", BACKENDS)
def test_question_answering_repaired_offsets(world, backend):
    """A context starting with a control character: HF's spans are one character early; ours are the
    answer's own characters (the text of the tokens the model chose)."""
    ours = world.pipeline("question-answering", "question_answering", backend)
    theirs = world.hf_pipeline("question-answering", "question_answering")
    context = "\x1f" + CONTEXT
    got = ours(question=QUESTIONS[0], context=context, top_k=3, align_to_words=False)
    expected = theirs(question=QUESTIONS[0], context=context, top_k=3, align_to_words=False)
    enc = world.tokenizer(QUESTIONS[0], context, return_offsets_mapping=True)
    tokens = world.tokenizer.convert_ids_to_tokens(enc["input_ids"])
    context_tokens = [(t, o) for t, o, s in zip(tokens, enc["offset_mapping"], enc.sequence_ids()) if s == 1]
    for a, b in zip(got, expected, strict=True):
        assert abs(a["score"] - b["score"]) <= SCORE_ATOL
        assert (a["start"], a["end"]) == (b["start"] + 1, b["end"] + 1)  # HF: shifted onto the control char
        covered = [t for t, (s, e) in context_tokens if a["start"] <= s and e <= a["end"] and e > s]
        assert norm(a["answer"]) == norm("".join(covered)), (a, covered)
        assert norm(b["answer"]) != norm("".join(covered)), b


def test_question_answering_answers_are_slices_of_the_context(world):
    """Hypothesis: random contexts and windows; every answer is ``context[start:end]`` on whole characters."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    qa = world.pipeline("question-answering", "question_answering", "torch")
    words = st.sampled_from(
        [
            "Paris",
            "Warsaw",
            "cat",
            "mat",
            "Марія",
            "e\u0301t\u00e9",
            "北京",
            "naïve",
            "York",
            "\x1f",
            "<mask>",
            ",",
        ]
    )
    spaces = st.sampled_from([" ", "  ", "\t", " \u3000"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(st.tuples(words, spaces), min_size=1, max_size=60),
        st.integers(24, 64),
        st.integers(1, 20),
        st.integers(1, 6),
        st.booleans(),
        st.booleans(),
    )
    def check(parts, max_seq_len, doc_stride, top_k, align, impossible):
        context = "".join(w + s for w, s in parts).strip(" ") or "cat"
        if not context.strip():
            return
        out = qa(
            question="Where is the cat?",
            context=context,
            max_seq_len=max_seq_len,
            doc_stride=min(doc_stride, max_seq_len // 3),
            top_k=top_k,
            align_to_words=align,
            handle_impossible_answer=impossible,
        )
        for answer in out if isinstance(out, list) else [out]:
            start, end = answer["start"], answer["end"]
            assert 0 <= start <= end <= len(context), answer
            assert answer["answer"] == context[start:end]
            for pos in (start, end):  # never between a character and its combining mark
                assert pos == len(context) or not unicodedata.combining(context[pos]) or pos == 0, (
                    context,
                    answer,
                )

    check()


# -- feature extraction ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_feature_extraction_matches_hf(world, backend):
    ours = world.pipeline("feature-extraction", "base", backend)
    theirs = world.hf_pipeline("feature-extraction", "base")
    texts = [
        "The cat sat on the mat.",
        "Москва",
        "John Smith lives in New York and works for the United Nations.",
    ]
    assert_same(np.array(ours(texts[0])), np.array(theirs(texts[0])))
    for got, exp in zip(ours(texts, batch_size=2), theirs(texts)):  # HF unbatched: no padding positions
        assert_same(np.array(got), np.array(exp))
    got = ours(texts[2], return_tensors=True, truncation=True, tokenize_kwargs={"max_length": 6})
    exp = theirs(texts[2], return_tensors=True, truncation=True, tokenize_kwargs={"max_length": 6})
    assert isinstance(got, np.ndarray) and got.shape == tuple(exp.shape) == (1, 6, 32)
    assert_same(got, exp.numpy())
    # a head model's backbone gives the same features
    head_model = world.ours(backend, "masked_lm")
    assert (
        np.array(xlmr.pipeline("feature-extraction", head_model, tokenizer=world.tokenizer)("cat")).shape[-1]
        == 32
    )


# -- batching and packing: results never depend on how the inputs are batched -----------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_results_do_not_depend_on_batching(world, backend):
    texts = NER_TEXTS * 3 + ["cat", "The cat sat on the mat, and the dog slept in the garden. " * 3]
    ner = world.pipeline("ner", "token_classification", backend, aggregation_strategy="simple")
    reference = [ner(t) for t in texts]
    for options in ({}, {"batch_size": 1}, {"batch_size": 4}):
        for got, exp, text in zip(ner(texts, **options), reference, texts, strict=True):
            assert_entities(got, exp, text)
    tight = world.pipeline(
        "ner", "token_classification", backend, aggregation_strategy="simple", max_batch_tokens=MAX_LENGTH
    )
    for got, exp, text in zip(tight(texts), reference, texts, strict=True):
        assert_entities(got, exp, text)
    fill = world.pipeline("fill-mask", "masked_lm", backend)
    masked = [
        t.replace("cat", "<mask>").replace("Paris", "<mask>") for t in texts if "cat" in t or "Paris" in t
    ]
    assert_same(fill(masked, batch_size=3), [fill(t) for t in masked])


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_rows_match_padded(world, backend):
    """With packed rows (``segment_ids``) where the backend takes them: the same results as padded."""
    model = world.ours(backend, "token_classification")
    from xlmr.pipelines._model import import_tasks

    if not import_tasks(backend).accepts_segment_ids(model):
        pytest.skip(f"xlmr_{backend} does not take segment_ids yet (packed rows)")
    texts = NER_TEXTS * 2 + ["cat"]
    padded = world.pipeline("ner", "token_classification", backend, packed=False, aggregation_strategy="none")
    packed = world.pipeline("ner", "token_classification", backend, packed=True, aggregation_strategy="none")
    assert packed.runner.packed and not padded.runner.packed
    for got, exp, text in zip(packed(texts), padded(texts), texts):
        assert_entities(got, exp, text)
    for task, kind, inputs in (
        ("text-classification", "sequence_classification", CLASSIFY),
        ("fill-mask", "masked_lm", FILL_TEXTS),
        ("feature-extraction", "base", CLASSIFY),
    ):
        a = world.pipeline(task, kind, backend, packed=True)(inputs)
        b = world.pipeline(task, kind, backend, packed=False)(inputs)
        if task == "feature-extraction":
            a, b = [np.array(x) for x in a], [np.array(x) for x in b]
        assert_same(a, b, task)
    qa = dict(question=QUESTIONS, context=CONTEXT, max_seq_len=40, doc_stride=10, top_k=2)
    assert_same(
        world.pipeline("question-answering", "question_answering", backend, packed=True)(**qa),
        world.pipeline("question-answering", "question_answering", backend, packed=False)(**qa),
    )


def test_progress_bar_on_long_lists(world, capsys):
    fill = world.pipeline("fill-mask", "masked_lm", "torch", progress=True, batch_size=2)
    fill(FILL_TEXTS * 2)
    assert "fill-mask" in capsys.readouterr().err
    quiet = world.pipeline("fill-mask", "masked_lm", "torch", progress=False, batch_size=2)
    quiet(FILL_TEXTS * 2)
    assert "fill-mask" not in capsys.readouterr().err


# -- loading from directories ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(world, tmp_path_factory):
    """{kind: directory}: each reference model saved (safetensors) with the tokenizer beside it."""
    import conversion

    root = tmp_path_factory.mktemp("pipeline_checkpoints")
    dirs = {}
    for kind in ("masked_lm", "sequence_classification", "token_classification", "question_answering"):
        head, config = HEAD_OF.get(kind, kind), world.config(kind)
        config.architectures = [xlmr.HEADS[head].torch_class]
        state = canonical_state_dict(world.hf_model(kind), config, head)
        conversion.save_pretrained(state, config, head, root / kind, "safetensors")
        world.tokenizer.save_pretrained(str(root / kind))
        dirs[kind] = root / kind
    return dirs


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_from_a_directory(world, checkpoints, backend):
    get_adapter(backend)
    fill = xlmr.pipeline("fill-mask", checkpoints["masked_lm"], backend=backend)
    assert fill.backend == backend and fill.model.head.name == "masked_lm"
    assert_same(fill(FILL_TEXTS[0]), world.pipeline("fill-mask", "masked_lm", "torch")(FILL_TEXTS[0]))
    features = xlmr.pipeline("feature-extraction", str(checkpoints["masked_lm"]), backend=backend)
    assert np.array(features("cat")).shape[-1] == 32


def test_readme_task_examples_run(world, checkpoints, tmp_path):
    """The README's Tasks examples run as written (on the tiny checkpoints)."""
    import xlmr_torch
    from xlmr._sentence import plain_layout

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Tasks: `xlmr.pipeline`", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 6, "one example per task"
    # A sentence-transformers directory with e5's prompts (mean pooling over the tiny base model).
    encoder = xlmr_torch.SentenceEncoder(world.ours("torch", "base"), world.tokenizer, plain_layout(32))
    encoder.prompts = {"query": "query: ", "passage": "passage: "}
    encoder.save_pretrained(tmp_path / "e5")
    paths = {
        "path/to/multilingual-e5-base": tmp_path / "e5",
        "path/to/xlm-roberta-base": checkpoints["masked_lm"],
        "path/to/classifier": checkpoints["sequence_classification"],
        "path/to/ner-model": checkpoints["token_classification"],
        "path/to/qa-model": checkpoints["question_answering"],
    }
    namespace: dict = {"long_text": CONTEXT * 3}
    for block in blocks:
        for placeholder, directory in paths.items():
            block = block.replace(placeholder, str(directory))
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102


# -- bad input -------------------------------------------------------------------------------------
def test_unknown_task_names_the_available_ones(world):
    with pytest.raises(KeyError) as err:
        xlmr.pipeline("summarization", world.ours("torch", "masked_lm"), tokenizer=world.tokenizer)
    for name in ("fill-mask", "text-classification", "token-classification", "question-answering", "ner",
                 "sentence-embedding"):  # fmt: skip
        assert name in str(err.value)


def test_fill_mask_without_mask_names_it(world):
    fill = world.pipeline("fill-mask", "masked_lm", "torch")
    with pytest.raises(ValueError, match=r"no mask token \(<mask>\) in input 1"):
        fill(["a <mask>", "no mask here"])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"question": "", "context": CONTEXT}, "the question of example 0 is empty"),
        ({"question": "Who?", "context": ""}, "the context of example 0 is empty"),
        ({"question": "Who?", "context": "   "}, "the context of example 0 is empty"),
        ({"context": CONTEXT}, "question= is missing"),
        ({"question": "Who?"}, "context= is missing"),
        ({"question": ["a", "b"], "context": [CONTEXT]}, "2 questions but 1 contexts"),
        ({"question": None, "context": None}, "no input"),
    ],
)
def test_question_answering_bad_input(world, kwargs, fragment):
    qa = world.pipeline("question-answering", "question_answering", "torch")
    with pytest.raises(ValueError, match=fragment):
        qa(**kwargs)
    with pytest.raises(ValueError, match="has no 'question'"):
        qa({"context": CONTEXT})


def test_head_that_does_not_fit_the_task_says_which_it_needs(world, checkpoints):
    with pytest.raises(ValueError, match="needs a XLMRobertaForTokenClassification model") as err:
        xlmr.pipeline("token-classification", checkpoints["masked_lm"])
    assert "XLMRobertaForMaskedLM" in str(err.value)
    with pytest.raises(ValueError, match="needs a XLMRobertaForQuestionAnswering"):
        xlmr.pipeline("question-answering", world.ours("torch", "masked_lm"), tokenizer=world.tokenizer)
    with pytest.raises(ValueError, match="backend='tf', but the model is an xlmr_torch model"):
        xlmr.pipeline("fill-mask", world.ours("torch", "masked_lm"), tokenizer=world.tokenizer, backend="tf")
    with pytest.raises(ValueError, match="needs tokenizer="):
        xlmr.pipeline("fill-mask", world.ours("torch", "masked_lm"))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        xlmr.pipeline("fill-mask", checkpoints["masked_lm"] / "missing")
    with pytest.raises(TypeError, match="unexpected options"):
        world.pipeline("fill-mask", "masked_lm", "torch", topk=3)
    too_long = "The cat sat on the mat. " * 40 + "<mask>"
    with pytest.raises(ValueError, match="input 0 .* tokens long, but the model takes at most 128"):
        world.pipeline("fill-mask", "masked_lm", "torch")(too_long)


# -- the xlmr command ------------------------------------------------------------------------------
def _xlmr(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "xlmr.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_xlmr_run_prints_json_lines(world, checkpoints, tmp_path):
    directory = str(checkpoints["masked_lm"])
    expected = world.pipeline("fill-mask", "masked_lm", "torch")(FILL_TEXTS[:2], top_k=2)
    proc = _xlmr("run", "fill-mask", "--model", directory, "--top-k", "2", *FILL_TEXTS[:2])
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert_same(lines, expected)
    # lines of a file, and stdin
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(FILL_TEXTS[:2]) + "\n", encoding="utf-8")
    proc = _xlmr("run", "fill-mask", "--model", directory, "--top-k", "2", "--input", str(texts))
    assert_same([json.loads(line) for line in proc.stdout.splitlines()], expected)
    proc = _xlmr("run", "fill-mask", "--model", directory, "--top-k", "2", stdin="\n".join(FILL_TEXTS[:2]))
    assert_same([json.loads(line) for line in proc.stdout.splitlines()], expected)
    # question answering: --question, each text a context
    qa_dir = str(checkpoints["question_answering"])
    proc = _xlmr(
        "run",
        "question-answering",
        "--model",
        qa_dir,
        "--backend",
        "flax",
        "--question",
        QUESTIONS[0],
        CONTEXT,
    )
    assert proc.returncode == 0, proc.stderr
    expected = world.pipeline("question-answering", "question_answering", "torch")(
        question=QUESTIONS[0], context=CONTEXT
    )
    assert_same(json.loads(proc.stdout), expected)


def test_xlmr_command_errors_and_aliases(checkpoints):
    proc = _xlmr("run", "summarization", "--model", str(checkpoints["masked_lm"]), "x")
    assert proc.returncode == 2 and "available tasks" in proc.stderr and "Traceback" not in proc.stderr
    proc = _xlmr("run", "fill-mask", "--model", str(checkpoints["masked_lm"]), "no mask")
    assert proc.returncode == 1 and "no mask token" in proc.stderr and "Traceback" not in proc.stderr
    proc = _xlmr("run", "ner", "--model", str(checkpoints["masked_lm"]), "x")
    assert proc.returncode == 1 and "XLMRobertaForTokenClassification" in proc.stderr
    proc = _xlmr("--help")
    assert proc.returncode == 0
    for sub in ("convert", "demo", "run", "embed"):
        assert sub in proc.stdout
    assert _xlmr("convert", "--help").returncode == 0
    assert "xlmr-convert" in _xlmr("convert", "--help").stdout
    assert _xlmr("demo", "--help").returncode == 0


def test_import_xlmr_stays_framework_free():
    code = (
        "import sys, xlmr; p = xlmr.pipeline; import xlmr.pipelines, xlmr.cli; "
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
