"""The demo's embedded data set: short everyday sentences in twelve languages, labelled by language.

The sentences were written for this project. Each of the twelve languages has 50 sentences on the
same everyday topics (buses, keys, weather, the bakery on the corner...), so the topic says nothing
about the language; 10 per language are held out (``split == "test"``). Three pairs share a script
and much vocabulary -- German/Dutch, Spanish/Portuguese, Russian/Ukrainian -- and Chinese/Japanese
share Han characters, so the task is not solved by the script alone.

File format (``langid.tsv``, UTF-8, a header line then one sentence a line): ``split<TAB>label<TAB>text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

DATA_FILE = "langid.tsv"

# ISO 639-1 code -> English name, in the order the file lists them.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "de": "German",
    "nl": "Dutch",
    "es": "Spanish",
    "pt": "Portuguese",
    "ru": "Russian",
    "uk": "Ukrainian",
    "el": "Greek",
    "ar": "Arabic",
    "hi": "Hindi",
    "zh": "Chinese",
    "ja": "Japanese",
}


@dataclass(frozen=True)
class Example:
    """One labelled sentence."""

    text: str
    label: str


def read_rows(name: str = DATA_FILE) -> list[tuple[str, str, str]]:
    """The ``(split, label, text)`` rows of an embedded data file, checked line by line."""
    raw = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    lines = raw.splitlines()
    if not lines or lines[0].split("\t") != ["split", "label", "text"]:
        raise ValueError(f"{name}: the first line must be the header 'split<TAB>label<TAB>text'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in ("train", "test") or not fields[2].strip():
            raise ValueError(f"{name}, line {number}: expected 'train|test<TAB>label<TAB>text', got {line!r}")
        rows.append((fields[0], fields[1], fields[2]))
    return rows


def load_dataset(name: str = DATA_FILE) -> tuple[list[Example], list[Example], list[str]]:
    """``(train, test, labels)`` of the embedded language-identification set.

    ``train`` and ``test`` are lists of :class:`Example` (``.text``, ``.label``); ``labels`` lists the
    label codes in the order they first appear in the file (use it as ``id2label``).

    Example:
        >>> from xlmr_demo.data import load_dataset
        >>> train, test, labels = load_dataset()
        >>> len(labels), len(train) + len(test)
        (12, 600)
    """
    train: list[Example] = []
    test: list[Example] = []
    labels: list[str] = []
    for split, label, text in read_rows(name):
        if label not in labels:
            labels.append(label)
        (train if split == "train" else test).append(Example(text, label))
    return train, test, labels
