"""Numpy-level readers and writers for HF's four XLM-R weight files, and the xlmr-convert CLI.

Every backend's ``from_pretrained`` reads through :func:`load_pretrained`, so any checkpoint
file opens in any backend; writing goes through :func:`save_pretrained`. :func:`open_state_dict`
opens a file lazily (tensor by tensor); :func:`convert` is the ``xlmr-convert`` command.

Modules: ``safetensors_io``, ``torch_io``, ``h5_io`` (tf_model.h5), ``msgpack_io``
(flax_model.msgpack) -- one per format, each with ``open_checkpoint`` / ``read`` / ``stage`` /
``write``; ``common`` (lazy tensors, shards, atomic staging); ``convert`` and ``cli``; ``adapters`` (PEFT
LoRA adapter directories in and out, merging one into a checkpoint); ``adapter_host`` (HF's
``PeftAdapterMixin`` calls, shared by the TF and Flax models); ``onnx_export`` (``--to onnx``:
ONNX graphs for ONNX Runtime, needs torch and onnxruntime). Sources may be Hub repo ids
(``org/name[@revision]``), resolved by :mod:`xlmr._hub`.
"""

from .common import (
    CheckpointError as CheckpointError,
)
from .convert import (
    convert as convert,
)
from .io import (
    FORMAT_ALIASES as FORMAT_ALIASES,
)
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
    open_state_dict as open_state_dict,
)
from .io import (
    read_state_dict as read_state_dict,
)
from .io import (
    resolve_format as resolve_format,
)
from .io import (
    save_pretrained as save_pretrained,
)
from .io import (
    write_state_dict as write_state_dict,
)
