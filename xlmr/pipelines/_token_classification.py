"""``token-classification`` (``ner``): labels of tokens and entities, as HF transformers 4.57's pipeline.

Character offsets come from xlmr's fast tokenizer, whose offsets are repaired where HF's point at
the wrong characters (see ``xlmr/_offsets.py``); everything else is HF's post-processing.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._base import Pipeline, choice, softmax

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Label each token of a text, or group tokens into entities.

    Call options (HF's): ``aggregation_strategy`` (``"none"``: one dict per token with its
    ``index``; ``"simple"``: adjacent tokens of one entity grouped; ``"first"`` / ``"average"`` /
    ``"max"``: words first get one label from their tokens' first / mean / highest scores, then
    grouped), ``ignore_labels`` (default ``["O"]``), ``stride`` (long texts in overlapping
    windows instead of truncation; not with ``"none"``), ``is_split_into_words`` and
    ``delimiter`` (pre-split words), and the deprecated ``grouped_entities`` /
    ``ignore_subwords``.

    Each result has ``entity`` (``entity_group`` when aggregated), ``score``, ``word`` (the
    decoded tokens, as HF), and ``start`` / ``end``: character offsets into the original text.

    Example:
        >>> import xlmr
        >>> ner = xlmr.pipeline("ner", "path/to/ner-model", aggregation_strategy="simple")  # doctest: +SKIP
        >>> ner("Angela Merkel besuchte Paris.")  # doctest: +SKIP
        [{'entity_group': 'PER', 'score': 0.99, 'word': 'Angela Merkel', 'start': 0, 'end': 13}, ...]
    """

    task = "token-classification"
    heads = ("token_classification",)

    def _sanitize(
        self,
        ignore_labels=None,
        grouped_entities: bool | None = None,
        ignore_subwords: bool | None = None,
        aggregation_strategy: str | None = None,
        is_split_into_words: bool = False,
        stride: int | None = None,
        delimiter: str | None = None,
        **rest: Any,
    ) -> dict:
        super()._sanitize(**rest)
        params: dict[str, Any] = {"is_split_into_words": bool(is_split_into_words)}
        if is_split_into_words:
            params["delimiter"] = " " if delimiter is None else delimiter
        if grouped_entities is not None or ignore_subwords is not None:
            if grouped_entities and ignore_subwords:
                aggregation_strategy = "first"
            elif grouped_entities and not ignore_subwords:
                aggregation_strategy = "simple"
            else:
                aggregation_strategy = "none"
            warnings.warn(
                f'grouped_entities / ignore_subwords are deprecated; use aggregation_strategy="{aggregation_strategy}"',
                UserWarning,
                stacklevel=3,
            )
        if aggregation_strategy is not None:
            params["aggregation_strategy"] = choice(aggregation_strategy, STRATEGIES, "aggregation_strategy")
        if ignore_labels is not None:
            params["ignore_labels"] = list(ignore_labels)
        if stride is not None:
            if stride >= self.max_length:
                raise ValueError(
                    f"stride ({stride}) must be less than the longest window ({self.max_length} tokens, "
                    "special tokens included)"
                )
            if params.get("aggregation_strategy") == "none":
                raise ValueError(
                    'stride was given to process the whole text, but aggregation_strategy="none"; '
                    "choose simple, first, average or max"
                )
            params["stride"] = int(stride)
        return params

    def __call__(self, inputs, **options: Any):
        params = self._params(options)
        split = params.get("is_split_into_words", False)
        if split:
            single = bool(inputs) and not all(isinstance(x, list) for x in inputs)
        else:
            single = isinstance(inputs, str)
        items = [inputs] if single else list(inputs)
        chunks = self._encode(items, params)
        sequences = [c["input_ids"] for c in chunks]
        logits = self.runner.head_outputs(
            sequences, ("logits",), desc="token-classification", batch_size=params["batch_size"]
        )
        per_item: list[list] = [[] for _ in items]
        for chunk, out in zip(chunks, logits):
            per_item[chunk["item"]].append((chunk, out["logits"]))
        strategy = params.get("aggregation_strategy", "none")
        ignore = params.get("ignore_labels", ["O"])
        results = [self.postprocess(parts, strategy, ignore) for parts in per_item]
        # HF: one list of pre-split words still gives a list (of its one result)
        return results[0] if single and not split else results

    def _encode(self, items: list, params: dict) -> list[dict]:
        """Tokenize; one dict per model input (a text gives several with ``stride``)."""
        split = params.get("is_split_into_words", False)
        delimiter = params.get("delimiter", " ")
        sentences, word_maps = [], []
        for i, item in enumerate(items):
            if split:
                if not isinstance(item, list) or not all(isinstance(w, str) for w in item):
                    raise ValueError(
                        f"token-classification: with is_split_into_words=True, input {i} must be a list of words"
                    )
                sentence, spans, offset = delimiter.join(item), [], 0
                for word in item:
                    spans.append((offset, offset + len(word)))
                    offset += len(word) + len(delimiter)
                sentences.append(sentence)
                word_maps.append(spans)
            else:
                if not isinstance(item, str):
                    raise ValueError(
                        f"token-classification: input {i} must be a string (or a list of words with "
                        f"is_split_into_words=True), got {type(item).__name__}"
                    )
                sentences.append(item)
                word_maps.append(None)
        if not items:
            return []
        kwargs: dict[str, Any] = dict(
            truncation=True,
            max_length=self.max_length,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
        )
        if split:
            kwargs["is_split_into_words"] = True
        if "stride" in params:
            kwargs.update(return_overflowing_tokens=True, stride=params["stride"])
        enc = self.tokenizer(items if split else sentences, **kwargs)
        owner = enc["overflow_to_sample_mapping"] if "stride" in params else range(len(items))
        chunks = []
        for j, item in enumerate(owner):
            chunks.append(
                {
                    "item": int(item),
                    "input_ids": enc["input_ids"][j],
                    "offset_mapping": enc["offset_mapping"][j],
                    "special_tokens_mask": enc["special_tokens_mask"][j],
                    "sentence": sentences[int(item)],
                    "word_ids": enc.word_ids(j) if split else None,
                    "word_to_chars_map": word_maps[int(item)],
                }
            )
        return chunks

    # -- HF's post-processing -------------------------------------------------------------------
    def postprocess(
        self, parts: list, aggregation_strategy: str = "none", ignore_labels=("O",)
    ) -> list[dict]:
        all_entities = []
        for chunk, logits in parts:
            scores = softmax(np.asarray(logits, np.float32))
            pre_entities = self.gather_pre_entities(chunk, scores, aggregation_strategy)
            grouped = self.aggregate(pre_entities, aggregation_strategy)
            all_entities.extend(
                e
                for e in grouped
                if e.get("entity", None) not in ignore_labels
                and e.get("entity_group", None) not in ignore_labels
            )
        if len(parts) > 1:
            all_entities = self.aggregate_overlapping_entities(all_entities)
        return [_plain(e) for e in all_entities]

    @staticmethod
    def aggregate_overlapping_entities(entities: list[dict]) -> list[dict]:
        """Entities of overlapping windows: of two that overlap, the longer (then higher-scoring) stays."""
        if not entities:
            return entities
        entities = sorted(entities, key=lambda x: x["start"])
        aggregated = []
        previous = entities[0]
        for entity in entities:
            # An empty span (the inserted "▁" standing alone, which HF gives the next character)
            # overlaps what starts where it stands.
            if previous["start"] <= entity["start"] < max(previous["end"], previous["start"] + 1):
                current_length = entity["end"] - entity["start"]
                previous_length = previous["end"] - previous["start"]
                if current_length > previous_length or (
                    current_length == previous_length and entity["score"] > previous["score"]
                ):
                    previous = entity
            else:
                aggregated.append(previous)
                previous = entity
        aggregated.append(previous)
        return aggregated

    def gather_pre_entities(self, chunk: dict, scores: np.ndarray, aggregation_strategy: str) -> list[dict]:
        sentence = chunk["sentence"]
        input_ids, offsets, special = (
            chunk["input_ids"],
            chunk["offset_mapping"],
            chunk["special_tokens_mask"],
        )
        word_ids, word_map = chunk["word_ids"], chunk["word_to_chars_map"]
        unk = self.tokenizer.unk_token_id
        pre_entities = []
        for idx, token_scores in enumerate(scores):
            if special[idx]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(input_ids[idx]))
            start_ind, end_ind = (int(x) for x in offsets[idx])
            if word_ids is not None and word_map is not None and word_ids[idx] is not None:
                start_char = word_map[word_ids[idx]][0]
                start_ind += start_char
                end_ind += start_char
            word_ref = sentence[start_ind:end_ind]
            # XLM-R's unigram tokenizer marks no continuing subwords: HF's fallback heuristic.
            is_subword = start_ind > 0 and " " not in sentence[start_ind - 1 : start_ind + 1]
            if int(input_ids[idx]) == unk:
                word = word_ref
                is_subword = False
            pre_entities.append(
                {
                    "word": word,
                    "scores": token_scores,
                    "start": start_ind,
                    "end": end_ind,
                    "index": idx,
                    "is_subword": is_subword,
                }
            )
        return pre_entities

    def aggregate(self, pre_entities: list[dict], aggregation_strategy: str) -> list[dict]:
        if aggregation_strategy in ("none", "simple"):
            entities = []
            for pre in pre_entities:
                entity_idx = int(pre["scores"].argmax())
                entities.append(
                    {
                        "entity": self.config.id2label[entity_idx],
                        "score": pre["scores"][entity_idx],
                        "index": pre["index"],
                        "word": pre["word"],
                        "start": pre["start"],
                        "end": pre["end"],
                    }
                )
        else:
            entities = self.aggregate_words(pre_entities, aggregation_strategy)
        if aggregation_strategy == "none":
            return entities
        return self.group_entities(entities)

    def aggregate_word(self, entities: list[dict], aggregation_strategy: str) -> dict:
        word = self.tokenizer.convert_tokens_to_string([e["word"] for e in entities])
        if aggregation_strategy == "first":
            scores = entities[0]["scores"]
            idx = int(scores.argmax())
            score = scores[idx]
        elif aggregation_strategy == "max":
            scores = max(entities, key=lambda e: e["scores"].max())["scores"]
            idx = int(scores.argmax())
            score = scores[idx]
        else:  # average
            average = np.nanmean(np.stack([e["scores"] for e in entities]), axis=0)
            idx = int(average.argmax())
            score = average[idx]
        return {
            "entity": self.config.id2label[idx],
            "score": score,
            "word": word,
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def aggregate_words(self, entities: list[dict], aggregation_strategy: str) -> list[dict]:
        """One entity per word: a token that is not a subword starts a new word."""
        word_entities, group = [], None
        for entity in entities:
            if group is None:
                group = [entity]
            elif entity["is_subword"]:
                group.append(entity)
            else:
                word_entities.append(self.aggregate_word(group, aggregation_strategy))
                group = [entity]
        if group is not None:
            word_entities.append(self.aggregate_word(group, aggregation_strategy))
        return word_entities

    def group_sub_entities(self, entities: list[dict]) -> dict:
        entity = entities[0]["entity"].split("-", 1)[-1]
        scores = np.nanmean([e["score"] for e in entities])
        return {
            "entity_group": entity,
            "score": np.mean(scores),
            "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    @staticmethod
    def get_tag(entity_name: str) -> tuple[str, str]:
        if entity_name.startswith("B-"):
            return "B", entity_name[2:]
        if entity_name.startswith("I-"):
            return "I", entity_name[2:]
        return "I", entity_name  # not B-/I-: a continuation

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag (not starting with ``B-``) become one group."""
        groups, current = [], []
        for entity in entities:
            if not current:
                current.append(entity)
                continue
            bi, tag = self.get_tag(entity["entity"])
            _, last_tag = self.get_tag(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(entity)
            else:
                groups.append(self.group_sub_entities(current))
                current = [entity]
        if current:
            groups.append(self.group_sub_entities(current))
        return groups


def _plain(entity: dict) -> dict:
    """numpy scalars -> Python numbers (JSON-ready)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in entity.items()}
