"""``fill-mask``: the most likely tokens at each ``<mask>``, as HF transformers 4.57's FillMaskPipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ._base import Pipeline, as_list, softmax

logger = logging.getLogger("xlmr.pipelines")


def last_layer_prunable(config: Any) -> bool:
    """Whether a backend may run the last encoder layer at the masked positions alone.

    True for a plain bidirectional encoder with absolute positions: there a token's output in
    the last layer depends on its own query and every token's key and value only. Relative
    position scores, decoders and cross-attention run the full layer.
    """
    return (
        config.position_embedding_type == "absolute"
        and not config.is_decoder
        and not config.add_cross_attention
        and config.num_hidden_layers > 0
    )


class FillMaskPipeline(Pipeline):
    """Predict the token at each ``<mask>`` of a text.

    The LM head (the projection onto the whole vocabulary) runs only at the masked positions.

    Call options (HF's): ``top_k`` (default 5), ``targets`` (a token or list of tokens to score
    instead of the whole vocabulary; a target not in the vocabulary is replaced by its first
    token), ``tokenizer_kwargs`` (e.g. ``{"truncation": True}``).

    Returns, for one text with one ``<mask>``, a list of ``top_k`` dicts ``{score, token,
    token_str, sequence}``; with several ``<mask>``, one such list per mask; for a list of texts,
    one result per text (a list of one text gives that text's result, as HF).

    Example:
        >>> import xlmr
        >>> fill = xlmr.pipeline("fill-mask", "path/to/xlm-roberta-base")  # doctest: +SKIP
        >>> fill("Paris is the <mask> of France.", top_k=2)  # doctest: +SKIP
        [{'score': 0.9, 'token': 10323, 'token_str': 'capital', 'sequence': 'Paris is the capital of France.'}, ...]
    """

    task = "fill-mask"
    heads = ("masked_lm",)

    def _sanitize(self, top_k: int | None = None, targets=None, tokenizer_kwargs=None, **rest: Any) -> dict:
        super()._sanitize(**rest)
        if self.tokenizer.mask_token_id is None:
            raise ValueError("fill-mask: the tokenizer does not define a mask token")
        params: dict[str, Any] = {}
        if tokenizer_kwargs is not None:
            params["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        if targets is not None:
            params["target_ids"] = self.target_ids(targets)
        if top_k is not None:
            params["top_k"] = top_k
        return params

    def target_ids(self, targets: str | list[str]) -> np.ndarray:
        """Token ids of ``targets`` (HF's rule: the vocabulary entry, else the first token of the text)."""
        if isinstance(targets, str):
            targets = [targets]
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                tokens = self.tokenizer(
                    target,
                    add_special_tokens=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    max_length=1,
                    truncation=True,
                )["input_ids"]
                if len(tokens) == 0:
                    logger.warning(
                        "fill-mask: target %r is not in the vocabulary and has no token; ignored", target
                    )
                    continue
                id_ = tokens[0]
                logger.warning(
                    "fill-mask: target %r is not in the vocabulary; using %r",
                    target,
                    self.tokenizer.convert_ids_to_tokens(id_),
                )
            ids.append(id_)
        ids = list(set(ids))  # HF's order (set of ints)
        if not ids:
            raise ValueError("fill-mask: targets gives no token; pass at least one target")
        return np.array(ids)

    def __call__(self, inputs: str | list[str], **options: Any):
        params = self._params(options)
        texts, single = as_list(inputs, "fill-mask")
        kwargs = {k: v for k, v in params.get("tokenizer_kwargs", {}).items() if k not in _NOT_PASSED}
        if kwargs.get("truncation") and "max_length" not in kwargs:
            kwargs["max_length"] = self.max_length
        sequences = self.tokenizer(texts, **kwargs)["input_ids"] if texts else []
        mask_id = self.tokenizer.mask_token_id
        positions = []
        for i, seq in enumerate(sequences):
            where = [p for p, t in enumerate(seq) if t == mask_id]
            if not where:
                raise ValueError(
                    f"fill-mask: no mask token ({self.tokenizer.mask_token}) in input {i}: {texts[i]!r}; "
                    f"write {self.tokenizer.mask_token} where a token should be predicted"
                )
            positions.append(where)
        self.check_lengths(sequences, texts)
        logits = self.runner.masked_lm_logits(
            sequences, positions, desc="fill-mask", batch_size=params["batch_size"]
        )
        results = [
            self.postprocess(seq, pos, lg, params.get("top_k", 5), params.get("target_ids"))
            for seq, pos, lg in zip(sequences, positions, logits)
        ]
        return results[0] if single or len(results) == 1 else results

    def _decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """The tokenizer's decode, leaving out ids past its vocabulary (a model vocabulary may be padded
        beyond it) as HF's fast tokenizer does."""
        size = len(self.tokenizer)
        return self.tokenizer.decode(
            [i for i in ids if 0 <= i < size], skip_special_tokens=skip_special_tokens
        )

    def postprocess(
        self,
        input_ids: list[int],
        masked_index: list[int],
        logits: np.ndarray,
        top_k: int = 5,
        target_ids: np.ndarray | None = None,
    ) -> list:
        """HF's ``postprocess`` on the logits at the masked positions, (masks, vocab)."""
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        probs = softmax(np.asarray(logits, np.float32))
        if target_ids is not None:
            probs = probs[..., target_ids]
        predictions = top_indices(probs, top_k)
        values = np.take_along_axis(probs, predictions, axis=-1)
        single_mask = values.shape[0] == 1
        ids = np.asarray(input_ids)
        pad = self.tokenizer.pad_token_id
        result = []
        for i, (row_values, row_predictions) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(row_values, row_predictions):
                tokens = ids.copy()
                if target_ids is not None:
                    p = int(target_ids[p])
                tokens[masked_index[i]] = p
                tokens = tokens[tokens != pad]
                # HF skips special tokens for readability, but keeps them with several masks so the
                # other <mask> tokens still show.
                sequence = self._decode(tokens.tolist(), skip_special_tokens=single_mask)
                row.append(
                    {
                        "score": float(v),
                        "token": int(p),
                        "token_str": self._decode([p]),
                        "sequence": sequence,
                    }
                )
            result.append(row)
        return result[0] if single_mask else result


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores of each row, best first (ties: lower index first)."""
    k = max(0, min(int(k), scores.shape[-1]))
    if 0 < k < scores.shape[-1]:
        part = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[-1]), scores.shape)[:, :k]
    part = np.sort(part, axis=-1)
    order = np.argsort(-np.take_along_axis(scores, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


# Tokenizer arguments the pipeline sets itself.
_NOT_PASSED = ("return_tensors", "padding", "return_offsets_mapping", "return_overflowing_tokens")
