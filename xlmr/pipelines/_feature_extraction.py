"""``feature-extraction``: the backbone's last hidden states, as HF transformers 4.57's pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Pipeline, as_list


class FeatureExtractionPipeline(Pipeline):
    """The last hidden states of the backbone, one vector per token (special tokens included).

    Any xlmr model works: a head model gives its backbone's states (HF would return the first
    output of the head, e.g. LM logits, for a head model object).

    Call options (HF's): ``truncation``, ``tokenize_kwargs`` (tokenizer arguments),
    ``return_tensors`` (a numpy array (1, tokens, hidden) instead of nested lists).

    Returns per text a nested list (1, tokens, hidden) -- only the text's own tokens, whatever the
    batching (HF's batched runs also return the padding positions).

    Example:
        >>> import xlmr
        >>> features = xlmr.pipeline("feature-extraction", "path/to/xlm-roberta-base", backend="flax")  # doctest: +SKIP
        >>> features("Hello world", return_tensors=True).shape  # doctest: +SKIP
        (1, 5, 768)
    """

    task = "feature-extraction"
    heads = ()

    def _sanitize(self, truncation=None, tokenize_kwargs=None, return_tensors=None, **rest: Any) -> dict:
        super()._sanitize(**rest)
        kwargs = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in kwargs:
                raise ValueError("truncation given twice (as an option and in tokenize_kwargs)")
            kwargs["truncation"] = truncation
        params: dict[str, Any] = {}
        if kwargs:
            params["tokenize_kwargs"] = kwargs
        if return_tensors is not None:
            params["return_tensors"] = return_tensors
        return params

    def __call__(self, inputs: str | list[str], **options: Any):
        params = self._params(options)
        texts, single = as_list(inputs, "feature-extraction")
        kwargs = {
            k: v
            for k, v in params.get("tokenize_kwargs", {}).items()
            if k not in ("return_tensors", "padding")
        }
        if kwargs.get("truncation") and "max_length" not in kwargs:
            kwargs["max_length"] = self.max_length
        sequences = self.tokenizer(texts, **kwargs)["input_ids"] if texts else []
        self.check_lengths(sequences, texts)
        states = self.runner.hidden_states(
            sequences, desc="feature-extraction", batch_size=params["batch_size"]
        )
        as_array = bool(params.get("return_tensors"))
        results = [s[None].astype(np.float32) if as_array else s[None].tolist() for s in states]
        return results[0] if single else results
