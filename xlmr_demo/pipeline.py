"""The demo's steps: tokenizer, Keras training, saving and conversion, three-backend evaluation, report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ._backends import DemoError, forward_fn, import_backend, load_model
from .console import Progress, format_table, say
from .data import LANGUAGE_NAMES, Example, load_dataset
from .settings import Settings

HEAD = "sequence_classification"
CLASS_NAME = "XLMRobertaForSequenceClassification"
# Which file each backend's directory holds (tf: what the Keras model's save_pretrained writes).
CONVERTED = {"torch": "pytorch", "flax": "flax"}


def train_tokenizer(texts: list[str], vocab_size: int, directory: Path):
    """An XLM-R-style SentencePiece tokenizer trained on ``texts``, saved in ``directory``."""
    import xlmr

    # character_coverage=1.0: keep every character of the (small) corpus, Han characters included.
    return xlmr.XLMRobertaTokenizerFast.train(
        texts, vocab_size, save_directory=str(directory), character_coverage=1.0
    )


def encode(tokenizer, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int32 arrays padded (or truncated) to ``length`` tokens."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=length)
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    mask = np.asarray(enc["attention_mask"], dtype=np.int32)
    if ids.shape != (len(texts), length):
        raise RuntimeError(f"tokenizer returned shape {ids.shape}, expected {(len(texts), length)}")
    return ids, mask


def subset(examples: list[Example], labels: list[str], per_language: int | None) -> list[Example]:
    if per_language is None:
        return examples
    out: list[Example] = []
    for label in labels:
        out.extend([e for e in examples if e.label == label][:per_language])
    return out


def batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


class Pipeline:
    """One demo run in ``workdir``; ``run()`` returns the exit code."""

    def __init__(self, settings: Settings, backends: list[str], workdir: Path, seed: int = 0) -> None:
        self.s = settings
        self.backends = backends
        self.workdir = workdir
        self.seed = seed
        self.progress = Progress(total=6)

    # -- steps --------------------------------------------------------------------------------
    def run(self) -> int:
        s, p = self.s, self.progress
        train, test, labels = load_dataset()
        per_lang = s.per_language or (None, None)
        self.train = subset(train, labels, per_lang[0])
        self.test = subset(test, labels, per_lang[1])
        self.labels = labels
        scripts = ", ".join(LANGUAGE_NAMES[code] for code in labels)
        say(f"xlmr demo: language identification, {len(labels)} languages ({scripts})")
        say(f"  {len(self.train)} training / {len(self.test)} held-out sentences; working in {self.workdir}")

        p.header(f"Loading frameworks ({', '.join(sorted({'tf', *self.backends}))})")
        for name in ["tf", *[b for b in self.backends if b != "tf"]]:
            import_backend(name)
        p.done()

        p.header(f"Training an XLM-R SentencePiece tokenizer (vocab {s.vocab_size}) on the training text")
        self.tokenizer = train_tokenizer(
            [e.text for e in self.train], s.vocab_size, self.workdir / "tokenizer"
        )
        vocab = len(self.tokenizer)
        lengths = [len(self.tokenizer(e.text)["input_ids"]) for e in self.train + self.test]
        self.length = min(s.max_length, max(lengths))
        sample = self.train[len(self.train) // 3].text
        pieces = self.tokenizer.convert_ids_to_tokens(self.tokenizer(sample)["input_ids"])
        say(
            f"    vocabulary {vocab} pieces; sentences are {min(lengths)}-{max(lengths)} tokens "
            f"(padded to {self.length})"
        )
        say(f"    e.g. {sample!r}\n      -> {' '.join(pieces)}")
        p.done()

        p.header(
            f"Training TFXLMRobertaForSequenceClassification from scratch with Keras ({s.epochs} epochs)"
        )
        model, config = self.train_tf(vocab)
        p.done("trained")

        p.header("Saving the Keras model and converting it to PyTorch and Flax checkpoints")
        self.dirs = self.save_and_convert(model, config)
        p.done()

        p.header(f"Classifying the {len(self.test)} held-out sentences in each backend")
        reference = self.in_memory_logits(model)
        results = {name: self.evaluate(name) for name in self.backends}
        p.done()

        p.header("Report")
        return self.report(reference, results)

    def train_tf(self, vocab_size: int):
        import keras

        import xlmr
        import xlmr_tf

        s = self.s
        keras.utils.set_random_seed(self.seed)
        config = xlmr.XLMRobertaConfig(
            vocab_size=vocab_size,
            hidden_size=s.hidden_size,
            num_hidden_layers=s.num_hidden_layers,
            num_attention_heads=s.num_attention_heads,
            intermediate_size=s.intermediate_size,
            max_position_embeddings=self.length + 2 + 1,  # positions start after pad_token_id (= 1)
            type_vocab_size=1,
            hidden_dropout_prob=s.dropout,
            attention_probs_dropout_prob=s.dropout,
            id2label=dict(enumerate(self.labels)),
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        say(
            f"    config: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"{config.num_attention_heads} heads, {config.num_labels} labels"
        )
        model = xlmr_tf.TFXLMRobertaForSequenceClassification(config)
        ids, mask = encode(self.tokenizer, [e.text for e in self.train], self.length)
        y = np.asarray([self.labels.index(e.label) for e in self.train], dtype=np.int32)
        steps = s.epochs * -(-len(y) // s.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, steps - steps // 10),
            alpha=0.05,
            warmup_target=s.learning_rate,
            warmup_steps=steps // 10,
        )
        # Gradient clipping at global norm 1 (HF Trainer's default) keeps the from-scratch run stable.
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=s.weight_decay, global_clipnorm=1.0
        )
        model.compile(optimizer=optimizer)
        model(input_ids=ids[:2], attention_mask=mask[:2])  # build the weights before counting them
        say(f"    {model.count_params():,} parameters; {steps} optimizer steps of {s.batch_size} sentences")
        # Labels go in the input dict: the model computes its own loss (HF's sequence-classification CE).
        verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs and pipes
        model.fit(
            {"input_ids": ids, "attention_mask": mask, "labels": y},
            batch_size=s.batch_size,
            epochs=s.epochs,
            shuffle=True,
            verbose=verbose,
        )
        return model, config

    def save_and_convert(self, model, config) -> dict[str, Path]:
        import conversion
        from conversion.convert import convert

        dirs = {"tf": self.workdir / "tf"}
        model.save_pretrained(str(dirs["tf"]))
        self.tokenizer.save_pretrained(str(dirs["tf"]))
        source = conversion.find_weight_file(dirs["tf"])
        say(f"    tf     {self._describe(source)}  (Keras model.save_pretrained + tokenizer)")
        for name, fmt in CONVERTED.items():
            dirs[name] = self.workdir / name
            # The xlmr-convert library call: reads any format, re-reads and checks what it wrote,
            # copies config.json and the tokenizer files.
            summary = convert(dirs["tf"], dirs[name], fmt)
            say(
                f"    {name:<6} {self._describe(summary.target)}  ({summary.tensors} tensors, "
                f"{summary.parameters:,} parameters, checked)"
            )
        return dirs

    def _describe(self, path: Path) -> str:
        return f"{path.relative_to(self.workdir)} ({path.stat().st_size / 1e6:.2f} MB)"

    def in_memory_logits(self, model) -> np.ndarray:
        """Logits of the trained Keras model itself (no file involved): the reference for all backends."""
        ids, mask = encode(self.tokenizer, [e.text for e in self.test], self.length)
        out = [
            np.asarray(model(input_ids=ids[a:b], attention_mask=mask[a:b], training=False).logits)
            for a, b in batches(len(ids), self.s.eval_batch_size)
        ]
        return np.concatenate(out)

    def evaluate(self, backend: str) -> dict:
        """Load ``backend``'s checkpoint, classify the test set in fixed-shape batches, time it."""
        import conversion

        directory = self.dirs[backend]
        t0 = time.perf_counter()
        model = load_model(backend, CLASS_NAME, directory)
        load_s = time.perf_counter() - t0
        run = forward_fn(backend, model, compile=True)
        ids, mask = encode(self.tokenizer, [e.text for e in self.test], self.length)
        n, bs = len(ids), self.s.eval_batch_size
        # Pad the last batch with padding rows so every call has one shape (one compilation).
        pad = (-n) % bs
        if pad:
            ids = np.concatenate([ids, np.repeat(ids[-1:], pad, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[-1:], pad, axis=0)])
        t0 = time.perf_counter()
        first = run(ids[:bs], mask[:bs])  # compiles (jax.jit / XLA) on the first call
        compile_s = time.perf_counter() - t0
        outs, times = [first], []
        for a, b in list(batches(len(ids), bs))[1:]:
            t0 = time.perf_counter()
            outs.append(run(ids[a:b], mask[a:b]))
            times.append(time.perf_counter() - t0)
        # Time the first batch again, now compiled, so single-batch runs get a number too.
        t0 = time.perf_counter()
        run(ids[:bs], mask[:bs])
        times.append(time.perf_counter() - t0)
        logits = np.concatenate(outs)[:n].astype(np.float64)
        predicted = logits.argmax(-1)
        gold = np.asarray([self.labels.index(e.label) for e in self.test])
        say(
            f"    {backend:<6} {len(times) + 1} batches of {bs}: first call {compile_s * 1e3:.0f} ms, then "
            f"{np.median(times) * 1e3:.2f} ms per batch (median)"
        )
        return {
            "file": conversion.find_weight_file(directory).name,
            "logits": logits,
            "accuracy": float((predicted == gold).mean()),
            "ms_per_batch": float(np.median(times) * 1e3),
            "first_call_ms": compile_s * 1e3,
            "load_s": load_s,
        }

    # -- report -------------------------------------------------------------------------------
    def report(self, reference: np.ndarray, results: dict[str, dict]) -> int:
        s = self.s
        rows = []
        for name, r in results.items():
            diff = float(np.max(np.abs(r["logits"] - reference)))
            r["diff_vs_reference"] = diff
            rows.append(
                [
                    name,
                    r["file"],
                    f"{r['accuracy']:.3f}",
                    f"{r['ms_per_batch']:.2f}",
                    f"{r['first_call_ms']:.0f}",
                    f"{diff:.2e}",
                ]
            )
        say(
            format_table(
                [
                    "backend",
                    "weights",
                    "accuracy",
                    f"ms/batch ({s.eval_batch_size}x{self.length})",
                    "first call ms",
                    "max|logit diff| vs trained",
                ],
                rows,
            )
        )
        names = list(results)
        pairwise = 0.0
        worst = ("trained", names[0]) if names else ("-", "-")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                d = float(np.max(np.abs(results[a]["logits"] - results[b]["logits"])))
                if d > pairwise:
                    pairwise, worst = d, (a, b)
        for name in names:
            if results[name]["diff_vs_reference"] > pairwise:
                pairwise, worst = results[name]["diff_vs_reference"], ("trained", name)
        say(
            f"\nLargest logit difference between backends: {pairwise:.2e} ({worst[0]} vs {worst[1]}; "
            f"limit {s.agreement_limit:g})"
        )

        first = results[names[0]]
        self.per_language(first["logits"])
        say(f"Total time {self.progress.total_seconds():.1f} s")

        failed = []
        if pairwise > s.agreement_limit:
            failed.append(f"backends disagree: logits differ by {pairwise:.3g} > {s.agreement_limit:g}")
        accuracies = {name: r["accuracy"] for name, r in results.items()}
        if s.accuracy_floor is not None:
            low = {n: a for n, a in accuracies.items() if a < s.accuracy_floor}
            if low:
                failed.append(
                    "accuracy below the floor "
                    f"{s.accuracy_floor}: " + ", ".join(f"{n} {a:.3f}" for n, a in low.items())
                )
        else:
            say("(accuracy floor not applied to a --quick run)")
        if failed:
            for message in failed:
                say(f"FAILED: {message}")
            return 1
        say(
            "OK: all backends agree"
            + ("" if s.accuracy_floor is None else f" and reach accuracy >= {s.accuracy_floor}")
        )
        return 0

    def per_language(self, logits: np.ndarray) -> None:
        predicted = logits.argmax(-1)
        parts = []
        for i, code in enumerate(self.labels):
            idx = [k for k, e in enumerate(self.test) if e.label == code]
            if idx:
                parts.append(f"{code} {np.mean([predicted[k] == i for k in idx]):.2f}")
        say("Per-language accuracy: " + "  ".join(parts))
        errors = [
            (e, self.labels[predicted[k]])
            for k, e in enumerate(self.test)
            if self.labels[predicted[k]] != e.label
        ]
        if errors:
            say(f"Some of the {len(errors)} errors:")
            for e, guess in errors[:6]:
                say(f"    {e.label} -> {guess}: {e.text}")


__all__ = ["Pipeline", "train_tokenizer", "encode", "DemoError"]
