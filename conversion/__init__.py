"""Numpy-level readers and writers for HF's four XLM-R weight files, and the xlmr-convert CLI.

Every backend's ``from_pretrained`` reads through :func:`load_pretrained`, so any checkpoint
file opens in any backend; writing goes through :func:`save_pretrained`.
"""

from .io import (
    FORMATS as FORMATS,
)
from .io import (
    find_weight_file as find_weight_file,
)
from .io import (
    load_pretrained as load_pretrained,
)
from .io import (
    read_state_dict as read_state_dict,
)
from .io import (
    save_pretrained as save_pretrained,
)
from .io import (
    write_state_dict as write_state_dict,
)
