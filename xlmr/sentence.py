"""Sentence embeddings, framework-neutral: the public names of :mod:`xlmr._sentence`.

The encoders themselves are ``xlmr_torch.SentenceEncoder``, ``xlmr_tf.TFSentenceEncoder`` and
``xlmr_flax.FlaxSentenceEncoder``; this module holds what needs no framework: sentence-transformers'
quantization and similarity functions (bit for bit), the post-processing modules and the
directory reader.

Example:
    >>> import numpy as np
    >>> from xlmr.sentence import quantize_embeddings, similarity
    >>> emb = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, -0.5]], np.float32)
    >>> quantize_embeddings(emb, "ubinary")
    array([[160],
           [192]], dtype=uint8)
    >>> similarity(emb, emb, "dot").round(2)
    array([[ 5.25, -1.5 ],
           [-1.5 ,  2.25]], dtype=float32)
"""

from ._sentence import POOLING_MODES as POOLING_MODES
from ._sentence import PRECISIONS as PRECISIONS
from ._sentence import SIMILARITY_FUNCTIONS as SIMILARITY_FUNCTIONS
from ._sentence import SUPPORTED_MODULES as SUPPORTED_MODULES
from ._sentence import Dense as Dense
from ._sentence import EncodeStats as EncodeStats
from ._sentence import Layout as Layout
from ._sentence import Normalize as Normalize
from ._sentence import Pooling as Pooling
from ._sentence import SentenceEncoderBase as SentenceEncoderBase
from ._sentence import UnsupportedModuleError as UnsupportedModuleError
from ._sentence import normalize as normalize
from ._sentence import quantize_embeddings as quantize_embeddings
from ._sentence import read_layout as read_layout
from ._sentence import similarity as similarity
from ._sentence import similarity_pairwise as similarity_pairwise

__all__ = [
    "POOLING_MODES",
    "PRECISIONS",
    "SIMILARITY_FUNCTIONS",
    "SUPPORTED_MODULES",
    "Dense",
    "EncodeStats",
    "Layout",
    "Normalize",
    "Pooling",
    "SentenceEncoderBase",
    "UnsupportedModuleError",
    "normalize",
    "quantize_embeddings",
    "read_layout",
    "similarity",
    "similarity_pairwise",
]
