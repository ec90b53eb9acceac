"""xlmr-demo: an end-to-end tour of xlmr on an embedded multilingual data set.

Trains an XLM-R-style SentencePiece tokenizer and a small XLM-R language identifier (TensorFlow /
Keras 3) from scratch, converts the checkpoint to PyTorch and Flax files, and checks that the three
backends classify held-out sentences with the same logits. ``xlmr-demo --model DIR`` runs fill-mask or
classification with a user's own HF checkpoint in any backend. See ``xlmr-demo --help``.
"""

from .data import LANGUAGE_NAMES as LANGUAGE_NAMES
from .data import Example as Example
from .data import load_dataset as load_dataset

__all__ = ["LANGUAGE_NAMES", "Example", "load_dataset", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line (see ``xlmr-demo --help``); returns the exit code."""
    from .cli import main as _main

    return _main(argv)
