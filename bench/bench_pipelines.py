"""Task pipelines (``xlmr.pipeline``) in each backend against HF transformers 4.57.6's PyTorch ``pipeline()``.

    python -m bench.bench_pipelines [--quick] [--texts N] [--parts=single,fill,ner]

Same process, same random weights (xlm-roberta-base shape, float32, CPU), the same tokenizer files
(the corpus tokenizer of ``bench/corpus.py``: an 8,000-piece XLM-R unigram model), the same
``batch_size`` on both sides. Three parts, in this order (``--parts`` picks some; each row is
printed on stderr as soon as it is measured):

1. ``single``: fill-mask on one text (a passage of about 100 tokens): HF's call and ours
   alternate, so that a change of the machine's load hits both alike; the ratio is of the medians,
   the notes give the best-of ratio too;
2. ``fill``: fill-mask over 1,000 texts of the benchmark corpus with one word replaced by
   ``<mask>``, ``top_k=5``, ``batch_size=4`` (HF materialises (batch, tokens, 250002) float32
   logits: 2 GB at 4 x 512);
3. ``ner``: token classification (9 labels, ``aggregation_strategy="simple"``) over the same 1,000
   texts, ``batch_size=32``.

HF pads each batch to its longest text in corpus order and projects every token onto the
vocabulary; xlmr sorts the texts by length (packing them into rows where the backend takes
``segment_ids``) and runs the LM head only at the masked positions (in PyTorch the last layer
too). Times are wall-clock seconds of the whole call (tokenization and post-processing included);
ratio = HF / xlmr. Flax compiles one program per batch shape: its first pass over the corpus
(compilation included) is reported in the notes, the timed pass is the second. TF traces its
``tf.function`` on a warm-up slice. The rows also report how many results equal HF's (labels and
tokens; scores within 1e-4) and the load average (other processes sharing the cores slow both
sides, the many small operations of one short text most).
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import sys
import tempfile
import time

from bench.shapes import TINY, XLMR_BASE

BACKENDS = ("torch", "tf", "flax")
NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
N_TEXTS = 1000
NER_BATCH, FILL_BATCH = 32, 4


def mask_one_word(text: str) -> str:
    """The text with its second word (or, without spaces, its fourth character) replaced by <mask>."""
    words = text.split(" ")
    if len(words) > 2:
        words[1] = "<mask>"
        return " ".join(words)
    return text[:3] + "<mask>" + text[4:]


def _tokenizers(directory: str):
    import transformers

    import xlmr
    from bench import corpus

    corpus.tokenizer().save_pretrained(directory)
    ours = xlmr.XLMRobertaTokenizerFast.from_pretrained(directory, model_max_length=512)
    theirs = transformers.XLMRobertaTokenizerFast.from_pretrained(directory, model_max_length=512)
    return ours, theirs


def _hf_model(head_class: str, shape: dict, **extra):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.XLMRobertaConfig(**shape, **extra)
    return getattr(transformers, head_class)(config).eval()


def _ours(backend: str, head: str, hf_model, shape: dict, **extra):
    """Our model of ``backend`` holding ``hf_model``'s weights."""
    import importlib

    import xlmr
    from xlmr import weights as W

    if backend == "tf":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    config = xlmr.XLMRobertaConfig(**shape, **extra)
    state = W.resolve_ties(
        W.canonicalize({k: v.detach().numpy() for k, v in hf_model.state_dict().items()}), config, head
    )
    package = importlib.import_module(f"xlmr_{backend}")
    cls = getattr(package, xlmr.HEADS[head].class_name(backend))
    if backend == "torch":
        return cls(config).load_canonical_state_dict(state).eval()
    if backend == "tf":
        return cls(config).load_canonical_state_dict(state)
    model = cls(config, input_shape=(1, 1), _do_init=False)
    model.load_canonical_state_dict(state)
    return model


def _add(rows: list[dict], **row) -> None:
    """Append a row and show it at once on stderr (a base-size run takes long)."""
    rows.append(row)
    print(f"  {row['backend']:5} {row['benchmark']}: xlmr {row['xlmr']:.4g} {row['unit']}, HF {row['hf']:.4g}, "
          f"ratio {row['ratio']:.2f}; {row['notes']}", file=sys.stderr, flush=True)  # fmt: skip


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _same_entities(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(
        x["entity_group"] == y["entity_group"]
        and x["word"] == y["word"]
        and abs(x["score"] - float(y["score"])) < 1e-4
        for x, y in zip(a, b)
    )


def _same_fill(a, b) -> bool:
    a = a if isinstance(a[0], list) else [a]
    b = b if isinstance(b[0], list) else [b]
    return all(
        [x["token"] for x in ra] == [y["token"] for y in rb]
        and all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(ra, rb))
        for ra, rb in zip(a, b)
    )


def _run_ours(backend: str, pipe, texts: list[str], call) -> tuple[float, str, list]:
    """(seconds, note, results) of our pipeline over ``texts``, after the backend's warm-up."""
    note = ""
    if backend == "tf":
        call(pipe, texts[:64])  # traces the tf.function (it generalises the shapes after a retrace)
    elif backend == "flax":
        first, _ = _timed(lambda: call(pipe, texts))
        note = f"first pass (compiling) {first:.1f} s; "
    seconds, results = _timed(lambda: call(pipe, texts))
    return seconds, note, results


def _single_text(hf_pipe, pipe, one: str, reps: int) -> tuple[list[float], list[float]]:
    """Seconds of ``reps`` calls of HF's pipeline and ours on ``one``, alternating (after one warm call
    each), so that a change of the machine's load hits both sides alike."""
    hf_pipe(one), pipe(one)
    hf_times, times = [], []
    for _ in range(reps):
        hf_times.append(_timed(lambda: hf_pipe(one))[0])
        times.append(_timed(lambda: pipe(one))[0])
    return hf_times, times


PARTS = ("single", "fill", "ner")


def run(quick: bool = False, n_texts: int | None = None, parts: tuple[str, ...] = PARTS) -> list[dict]:
    import torch
    import transformers

    import xlmr
    from bench import corpus

    shape = dict(TINY if quick else XLMR_BASE)
    shape["vocab_size"] = max(shape["vocab_size"], 8002)  # the corpus tokenizer's ids
    n = n_texts or (48 if quick else N_TEXTS)
    texts = corpus.make_texts(n)
    masked = [mask_one_word(t) for t in texts]
    name = "tiny" if quick else "xlm-roberta-base shape"
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        tok, hf_tok = _tokenizers(directory)
        tokens = sum(len(x) for x in tok(texts, truncation=True, max_length=512)["input_ids"])

        # 1. fill-mask on one text, 2. fill-mask over the corpus
        if "single" in parts or "fill" in parts:
            hf_model = _hf_model("XLMRobertaForMaskedLM", shape)
            hf_pipe = transformers.pipeline("fill-mask", model=hf_model, tokenizer=hf_tok, framework="pt")

            def fill_pipe(backend: str):  # one backend's model at a time: four base-size models do not fit
                return xlmr.pipeline("fill-mask", _ours(backend, "masked_lm", hf_model, shape), tokenizer=tok)

        if "single" in parts:
            one = (
                next(t for t, ids in zip(masked, tok(masked)["input_ids"]) if 90 <= len(ids) <= 130)
                if not quick
                else masked[0]
            )
            n_tokens = len(tok(one)["input_ids"])
            reps = 10 if quick else 15
            hf_single = hf_pipe(one)
            for backend in BACKENDS:
                pipe = fill_pipe(backend)
                hf_times, times = _single_text(hf_pipe, pipe, one, reps)
                hf_one, ours_one = statistics.median(hf_times), statistics.median(times)
                _add(rows, **dict(
                    benchmark=f"fill-mask, one text of {n_tokens} tokens ({name})",
                    backend=backend, xlmr=1000 * ours_one, hf=1000 * hf_one, unit="ms", ratio=hf_one / ours_one,
                    notes=(f"medians of {reps} calls alternating with HF's; best of {reps}: xlmr "
                           f"{1000 * min(times):.4g} ms, HF {1000 * min(hf_times):.4g} ms "
                           f"(ratio {min(hf_times) / min(times):.2f}); equal to HF's: "
                           f"{_same_fill(pipe(one), hf_single)}; load average {_load()}"),
                ))  # fmt: skip
                del pipe
                gc.collect()
        if "fill" in parts:
            trunc = {"tokenizer_kwargs": {"truncation": True, "max_length": 512}}
            hf_s, expected = _timed(lambda: hf_pipe(masked, batch_size=FILL_BATCH, **trunc))
            for backend in BACKENDS:
                pipe = fill_pipe(backend)
                seconds, note, got = _run_ours(
                    backend, pipe, masked, lambda p, t: p(t, batch_size=FILL_BATCH, **trunc)
                )
                same = sum(_same_fill(a, b) for a, b in zip(got, expected))
                _add(rows, **dict(
                    benchmark=f"fill-mask, {n} corpus texts, top_k=5, batch_size={FILL_BATCH} ({name})",
                    backend=backend, xlmr=seconds, hf=hf_s, unit="s", ratio=hf_s / seconds,
                    notes=(f"{note}{same}/{n} results equal HF's; LM head at the masked positions only; "
                           f"load average {_load()}"),
                ))  # fmt: skip
                del pipe
                gc.collect()
        if "single" in parts or "fill" in parts:
            del hf_model, hf_pipe
            gc.collect()

        # 3. token classification over the corpus
        if "ner" in parts:
            labels = dict(num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)))
            hf_model = _hf_model("XLMRobertaForTokenClassification", shape, **labels)
            hf_pipe = transformers.pipeline("ner", model=hf_model, tokenizer=hf_tok, framework="pt",
                                            aggregation_strategy="simple")  # fmt: skip
            hf_s, expected = _timed(lambda: hf_pipe(texts, batch_size=NER_BATCH))
            for backend in BACKENDS:
                pipe = xlmr.pipeline(
                    "ner",
                    _ours(backend, "token_classification", hf_model, shape, **labels),
                    tokenizer=tok,
                    aggregation_strategy="simple",
                )
                seconds, note, got = _run_ours(backend, pipe, texts, lambda p, t: p(t, batch_size=NER_BATCH))
                same = sum(_same_entities(a, b) for a, b in zip(got, expected))
                _add(rows, **dict(
                    benchmark=(f"token classification, {n} corpus texts ({tokens} tokens), "
                               f"batch_size={NER_BATCH} ({name})"),
                    backend=backend, xlmr=seconds, hf=hf_s, unit="s", ratio=hf_s / seconds,
                    notes=f"{note}{same}/{n} results equal HF's; {threads} threads; load average {_load()}",
                ))  # fmt: skip
                del pipe
                gc.collect()
    return rows


def _load() -> str:
    """The 1-minute load average (other processes sharing the cores skew every time)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not on every platform
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n, parts = None, PARTS
    for i, arg in enumerate(argv):
        if arg == "--texts":
            n = int(argv[i + 1])
        elif re.fullmatch(r"--texts=\d+", arg):
            n = int(arg.split("=")[1])
        elif arg.startswith("--parts="):
            parts = tuple(arg.split("=", 1)[1].split(","))
            unknown = sorted(set(parts) - set(PARTS))
            if unknown:
                raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    rows = run(quick="--quick" in argv, n_texts=n, parts=parts)
    print("| benchmark | backend | xlmr | HF 4.57.6 | unit | ratio | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['benchmark']} | {r['backend']} | {r['xlmr']:.4g} | {r['hf']:.4g} | {r['unit']} | "
            f"{r['ratio']:.2f} | {r['notes']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
