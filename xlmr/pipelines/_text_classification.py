"""``text-classification``: labels of texts and text pairs, as HF transformers 4.57's TextClassificationPipeline."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._base import Pipeline, choice, sigmoid, softmax

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET = ""  # HF's marker for "top_k not given" (None means "every label")


class TextClassificationPipeline(Pipeline):
    """Classify texts, or text pairs given as ``{"text": ..., "text_pair": ...}``.

    Call options (HF's): ``top_k`` (default 1; None: every label, best first),
    ``function_to_apply`` (``"softmax"``, ``"sigmoid"``, ``"none"``; by default sigmoid for one
    label or multi-label models, none for regression, softmax otherwise), the deprecated
    ``return_all_scores``, and tokenizer arguments (``truncation``, ``max_length``).

    Returns ``{"label", "score"}`` per input (a list of them with ``top_k``). As in HF, a single
    string called without ``top_k`` gives a one-item list.

    Example:
        >>> import xlmr
        >>> classify = xlmr.pipeline("text-classification", "path/to/classifier", backend="flax")  # doctest: +SKIP
        >>> classify("Ich liebe dich")  # doctest: +SKIP
        [{'label': 'de', 'score': 0.98}]
    """

    task = "text-classification"
    heads = ("sequence_classification",)

    def _sanitize(
        self, return_all_scores=None, function_to_apply=None, top_k=_UNSET, **tokenizer_kwargs
    ) -> dict:
        params: dict[str, Any] = {"tokenizer_kwargs": tokenizer_kwargs} if tokenizer_kwargs else {}
        if return_all_scores is None:
            return_all_scores = getattr(self.config, "return_all_scores", None)
        if isinstance(top_k, int) or top_k is None:
            params["top_k"], params["_legacy"] = top_k, False
        elif return_all_scores is not None:
            warnings.warn(
                "`return_all_scores` is deprecated: use top_k=None instead of return_all_scores=True, "
                "top_k=1 instead of return_all_scores=False",
                UserWarning,
                stacklevel=3,
            )
            params["top_k"] = None if return_all_scores else 1
        elif top_k != _UNSET:
            raise TypeError(f"text-classification: top_k must be an integer or None, got {top_k!r}")
        if function_to_apply is not None:
            params["function_to_apply"] = choice(function_to_apply, FUNCTIONS, "function_to_apply")
        return params

    def default_function(self) -> str:
        """HF's default by ``problem_type`` and ``num_labels``."""
        config = self.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        if config.problem_type == "single_label_classification" or config.num_labels > 1:
            return "softmax"
        return getattr(config, "function_to_apply", None) or "none"

    def __call__(self, inputs, **options: Any):
        params = self._params(options)
        single = isinstance(inputs, str | dict)
        items = [inputs] if single else list(inputs)
        sequences = self._encode(items, params.get("tokenizer_kwargs", {}))
        self.check_lengths(sequences, items)
        logits = self.runner.head_outputs(
            sequences, ("logits",), desc="text-classification", batch_size=params["batch_size"]
        )
        results = [
            self.postprocess(
                out["logits"],
                params.get("function_to_apply"),
                params.get("top_k", 1),
                params.get("_legacy", True),
            )
            for out in logits
        ]
        if single:
            result = results[0]
            # HF: a plain string called without top_k gets its result wrapped in a list.
            return [result] if isinstance(inputs, str) and "top_k" not in options else result
        return results

    def _encode(self, items: list, tokenizer_kwargs: dict) -> list[list[int]]:
        kwargs = {k: v for k, v in tokenizer_kwargs.items() if k not in ("return_tensors", "padding")}
        if kwargs.get("truncation") and "max_length" not in kwargs:
            kwargs["max_length"] = self.max_length
        singles, pairs = [], []
        for i, item in enumerate(items):
            if isinstance(item, str):
                singles.append(i)
            elif isinstance(item, dict):
                unknown = set(item) - {"text", "text_pair"}
                if "text" not in item or unknown:
                    raise ValueError(
                        f"text-classification: input {i} must be a string or a dict with keys "
                        f'"text" and (optionally) "text_pair", got keys {sorted(item)}'
                    )
                pairs.append(i)
            elif (
                isinstance(item, list | tuple)
                and len(item) == 1
                and isinstance(item[0], list | tuple)
                and len(item[0]) == 2
            ):
                items[i] = {"text": item[0][0], "text_pair": item[0][1]}  # HF's old [[text, pair]] form
                pairs.append(i)
            else:
                raise ValueError(
                    "text-classification: invalid input; to classify a text pair, pass a dict "
                    '{"text": "My text", "text_pair": "My pair"}'
                )
        sequences: list = [None] * len(items)
        if singles:
            ids = self.tokenizer([items[i] for i in singles], **kwargs)["input_ids"]
            for i, seq in zip(singles, ids):
                sequences[i] = seq
        with_pair = [i for i in pairs if items[i].get("text_pair") is not None]
        alone = [i for i in pairs if items[i].get("text_pair") is None]
        if with_pair:
            ids = self.tokenizer(
                [items[i]["text"] for i in with_pair],
                text_pair=[items[i]["text_pair"] for i in with_pair],
                **kwargs,
            )["input_ids"]
            for i, seq in zip(with_pair, ids):
                sequences[i] = seq
        if alone:
            ids = self.tokenizer([items[i]["text"] for i in alone], **kwargs)["input_ids"]
            for i, seq in zip(alone, ids):
                sequences[i] = seq
        return sequences

    def postprocess(
        self, logits: np.ndarray, function_to_apply: str | None = None, top_k=1, _legacy: bool = True
    ):
        """HF's ``postprocess`` on one input's logits (num_labels,)."""
        function_to_apply = function_to_apply or self.default_function()
        outputs = np.asarray(logits, np.float32)
        if function_to_apply == "sigmoid":
            scores = sigmoid(outputs)
        elif function_to_apply == "softmax":
            scores = softmax(outputs)
        else:
            scores = outputs
        id2label = self.config.id2label
        if top_k == 1 and _legacy:
            return {"label": id2label[int(scores.argmax())], "score": float(scores.max())}
        dict_scores = [{"label": id2label[i], "score": float(score)} for i, score in enumerate(scores)]
        if not _legacy:
            dict_scores.sort(key=lambda x: x["score"], reverse=True)
            if top_k is not None:
                dict_scores = dict_scores[:top_k]
        return dict_scores
