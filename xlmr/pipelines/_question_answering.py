"""``question-answering``: extractive answers, as HF transformers 4.57's QuestionAnsweringPipeline.

Long contexts run in overlapping windows (the tokenizer's overflow with ``doc_stride``); answers are
character spans of the original context, cut with xlmr's repaired offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._base import Pipeline


class QuestionAnsweringPipeline(Pipeline):
    """Find the answer to a question in a context.

    Inputs: ``question=`` and ``context=`` (strings, or lists of equal length; a list of questions
    with one context asks them all of it), or dicts ``{"question", "context"}`` (or a list of them)
    as the first argument.

    Call options (HF's): ``top_k`` (default 1), ``doc_stride`` (overlap of the windows of a long
    context, default ``min(max_seq_len // 2, 128)``), ``max_answer_len`` (tokens, default 15),
    ``max_seq_len`` (tokens per window, question included; default 384, or less when the model
    or tokenizer takes less), ``max_question_len`` (accepted; like HF's fast path, the question is
    not truncated), ``handle_impossible_answer`` (allow the empty answer), ``align_to_words``
    (extend answers to whole words; default True).

    Returns ``{"score", "start", "end", "answer"}`` with ``answer == context[start:end]``; a list
    of them with ``top_k > 1``; one result per example for a list of examples.

    Example:
        >>> import xlmr
        >>> qa = xlmr.pipeline("question-answering", "path/to/qa-model", backend="tf")  # doctest: +SKIP
        >>> qa(question="Where do I live?", context="My name is Wolfgang and I live in Berlin")  # doctest: +SKIP
        {'score': 0.92, 'start': 34, 'end': 40, 'answer': 'Berlin'}
    """

    task = "question-answering"
    heads = ("question_answering",)

    def _sanitize(
        self,
        padding=None,  # accepted for HF's signature; windows are batched by the planner
        topk=None,
        top_k=None,
        doc_stride=None,
        max_answer_len=None,
        max_seq_len=None,
        max_question_len=None,
        handle_impossible_answer=None,
        align_to_words=None,
        **rest: Any,
    ) -> dict:
        super()._sanitize(**rest)
        params: dict[str, Any] = {}
        for name, value in (
            ("doc_stride", doc_stride),
            ("max_seq_len", max_seq_len),
            ("max_question_len", max_question_len),
        ):
            if value is not None:
                params[name] = value
        if topk is not None and top_k is None:
            top_k = topk
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k parameter should be >= 1 (got {top_k})")
            params["top_k"] = top_k
        if max_answer_len is not None:
            if max_answer_len < 1:
                raise ValueError(f"max_answer_len parameter should be >= 1 (got {max_answer_len})")
            params["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            params["handle_impossible_answer"] = handle_impossible_answer
        if align_to_words is not None:
            params["align_to_words"] = align_to_words
        return params

    def __call__(self, *args, question=None, context=None, **options: Any):
        params = self._params(options)
        examples, single = self._examples(args, question, context)
        spans = self._encode(examples, params)
        logits = self.runner.head_outputs(
            [s["input_ids"] for s in spans],
            ("start_logits", "end_logits"),
            desc="question-answering",
            batch_size=params["batch_size"],
        )
        per_example: list[list] = [[] for _ in examples]
        for span, out in zip(spans, logits):
            per_example[span["example"]].append((span, out))
        post = {
            k: params[k]
            for k in ("top_k", "handle_impossible_answer", "max_answer_len", "align_to_words")
            if k in params
        }
        results = [
            self.postprocess(examples[i]["context"], parts, **post) for i, parts in enumerate(per_example)
        ]
        return results[0] if single else results

    # -- inputs ---------------------------------------------------------------------------------
    @staticmethod
    def _examples(args: tuple, question, context) -> tuple[list[dict], bool]:
        if args:
            if len(args) == 2 and all(isinstance(a, str) for a in args):
                items, single = [{"question": args[0], "context": args[1]}], True
            elif len(args) == 1:
                items = args[0]
                single = isinstance(items, Mapping)
                items = [items] if single else list(items)
            else:
                raise ValueError("question-answering: pass question=..., context=... (or dicts of them)")
            if question is not None or context is not None:
                raise ValueError(
                    "question-answering: give the examples either as arguments or as question=/context="
                )
        elif question is not None or context is not None:
            if question is None or context is None:
                missing = "question" if question is None else "context"
                raise ValueError(
                    f"question-answering: {missing}= is missing; pass both question= and context="
                )
            if isinstance(question, list) and isinstance(context, str):
                items, single = [{"question": q, "context": context} for q in question], len(question) == 1
            elif isinstance(question, list) and isinstance(context, list):
                if len(question) != len(context):
                    raise ValueError(
                        f"question-answering: {len(question)} questions but {len(context)} contexts; "
                        "give one context per question (or one context for all)"
                    )
                items, single = (
                    [{"question": q, "context": c} for q, c in zip(question, context)],
                    len(question) == 1,
                )
            elif isinstance(question, str) and isinstance(context, str):
                items, single = [{"question": question, "context": context}], True
            else:
                raise ValueError(
                    "question-answering: question= and context= must be strings or lists of strings"
                )
        else:
            raise ValueError("question-answering: no input; pass question=... and context=...")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(
                    f"question-answering: example {i} must be a dict with question and context, got {type(item).__name__}"
                )
            for key in ("question", "context"):
                if key not in item:
                    raise ValueError(
                        f"question-answering: example {i} has no {key!r}; give question and context"
                    )
                value = item[key]
                if value is None:
                    raise ValueError(f"question-answering: the {key} of example {i} is None")
                if not isinstance(value, str):
                    raise ValueError(
                        f"question-answering: the {key} of example {i} must be a string, got {type(value).__name__}"
                    )
                if not value.strip():
                    raise ValueError(f"question-answering: the {key} of example {i} is empty")
        if len(items) == 1:
            single = True  # HF: a one-example list gives that example's result
        return [dict(item) for item in items], single

    def _encode(self, examples: list[dict], params: dict) -> list[dict]:
        """Windows of every example: ids, the mask of tokens that may be in an answer, the encoding."""
        if not examples:
            return []
        max_seq_len = params.get("max_seq_len") or min(self.max_length, 384)
        if max_seq_len > self.runner.max_length:
            raise ValueError(
                f"question-answering: max_seq_len={max_seq_len} is more than the model takes "
                f"({self.runner.max_length} tokens)"
            )
        doc_stride = params.get("doc_stride")
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        question_first = self.tokenizer.padding_side == "right"
        questions = [e["question"] for e in examples]
        contexts = [e["context"] for e in examples]
        enc = self.tokenizer(
            text=questions if question_first else contexts,
            text_pair=contexts if question_first else questions,
            padding="do_not_pad",  # the planner pads (or packs) the windows of a batch itself
            truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len,
            stride=doc_stride,
            return_token_type_ids=True,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        cls_id = self.tokenizer.cls_token_id
        spans = []
        for j, example in enumerate(enc["overflow_to_sample_mapping"]):
            ids = enc["input_ids"][j]
            # 1: cannot be in the answer (question, special tokens); 0: context; <s> stays 0.
            p_mask = np.array([(s != 1) if question_first else 0 for s in enc.sequence_ids(j)], np.int64)
            if cls_id is not None:
                p_mask[np.asarray(ids) == cls_id] = 0
            spans.append(
                {
                    "example": int(example),
                    "input_ids": ids,
                    "attention_mask": np.asarray(enc["attention_mask"][j], np.int64),
                    "p_mask": p_mask,
                    "encoding": enc[j],
                }
            )
        return spans

    # -- HF's post-processing -------------------------------------------------------------------
    def postprocess(
        self,
        context: str,
        parts: list,
        top_k: int = 1,
        handle_impossible_answer: bool = False,
        max_answer_len: int = 15,
        align_to_words: bool = True,
    ):
        min_null_score = 1000000  # large and positive
        answers: list[dict] = []
        question_first = self.tokenizer.padding_side == "right"
        sequence_index = 1 if question_first else 0
        for span, out in parts:
            pre_topk = top_k * 2 + 10 if align_to_words else top_k  # aligning to words may drop some
            starts, ends, scores, min_null_score = select_starts_ends(
                np.asarray(out["start_logits"], np.float32)[None],
                np.asarray(out["end_logits"], np.float32)[None],
                span["p_mask"],
                span["attention_mask"][None],
                min_null_score,
                pre_topk,
                handle_impossible_answer,
                max_answer_len,
            )
            enc = span["encoding"]
            for s, e, score in zip(starts, ends, scores):
                start_index, end_index = get_indices(enc, int(s), int(e), sequence_index, align_to_words)
                target = context[start_index:end_index]
                answer = next((a for a in answers if a["answer"].lower() == target.lower()), None)
                if answer:
                    answer["score"] += score.item()
                else:
                    answers.append(
                        {
                            "score": score.item(),
                            "start": int(start_index),
                            "end": int(end_index),
                            "answer": target,
                        }
                    )
        if handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
):
    """HF's span scoring: p(start) x p(end) for end >= start and at most ``max_answer_len`` tokens."""
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    # Unlike HF, never an end before its start: such spans score 0 and reach the results only when
    # a window has fewer possible spans than ``topk`` (they would give ``start > end``).
    desired &= ends >= starts
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


def select_starts_ends(
    start,
    end,
    p_mask,
    attention_mask,
    min_null_score=1000000,
    top_k=1,
    handle_impossible_answer=False,
    max_answer_len=15,
):
    """HF's normalisation of start/end logits over the tokens that may be in an answer, then :func:`decode_spans`."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # never the <s> token
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def get_indices(enc, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens ``s..e``: extended to whole words with ``align_to_words``."""
    if align_to_words:
        try:
            start_word = enc.token_to_word(s)
            end_word = enc.token_to_word(e)
            start_index = enc.word_to_chars(start_word, sequence_index=sequence_index)[0]
            end_index = enc.word_to_chars(end_word, sequence_index=sequence_index)[1]
        except Exception:  # noqa: BLE001 -- HF's rule: a token without a word keeps its own offsets
            start_index = enc.offsets[s][0]
            end_index = enc.offsets[e][1]
    else:
        start_index = enc.offsets[s][0]
        end_index = enc.offsets[e][1]
    return start_index, end_index
