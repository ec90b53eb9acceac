"""Framework glue for the demo: lazy imports with a clear message, and one forward function per backend.

Nothing here imports a framework at module level, so ``xlmr-demo --help`` stays fast and a missing
extra is reported as one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

BACKENDS = ("tf", "torch", "flax")

# backend -> (xlmr package, the third-party modules its extra installs)
_PACKAGES = {"torch": "xlmr_torch", "tf": "xlmr_tf", "flax": "xlmr_flax"}
_EXTRA_MODULES = {"torch": ("torch",), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
_CLASS_PREFIX = {"torch": "", "tf": "TF", "flax": "Flax"}

# (batch, classes) or (batch, seq, vocab) logits from int input ids and attention mask.
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class DemoError(Exception):
    """A problem the user can fix (missing extra, missing directory, bad text); printed as one line."""


def quiet_framework_env() -> None:
    """Environment for quiet, Keras-3-on-TensorFlow imports; must run before tensorflow/keras load."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"


@contextlib.contextmanager
def silenced_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment: TensorFlow's and XLA's C++ start-up logging
    (oneDNN / CUDA notices) bypasses Python and ignores TF_CPP_MIN_LOG_LEVEL once torch or jax loaded
    absl first. Python exceptions are unaffected (they are raised, not printed)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): leave it alone
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_backend(name: str):
    """The xlmr backend package ``name`` ("torch", "tf" or "flax"); DemoError when its extra is missing."""
    if name not in _PACKAGES:
        raise DemoError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    quiet_framework_env()
    for module in _EXTRA_MODULES[name]:
        try:
            with silenced_native_stderr():
                importlib.import_module(module)
        except ImportError as err:
            raise DemoError(
                f"the {name} backend needs `pip install 'xlmr[{name}]'` ({module} cannot be imported: {err})"
            ) from None
    if name == "tf":
        import keras

        if keras.backend.backend() != "tensorflow":
            raise DemoError(
                f"the tf backend needs Keras on TensorFlow, but keras was loaded with the "
                f"{keras.backend.backend()!r} backend (unset KERAS_BACKEND)"
            )
    with silenced_native_stderr():
        package = importlib.import_module(_PACKAGES[name])
        if getattr(package, "__file__", None) is None:  # a namespace package: nothing was installed
            raise DemoError(
                f"{_PACKAGES[name]} resolves to an empty namespace package ({list(package.__path__)}); "
                "reinstall xlmr (`pip install -e .` for a checkout made before the backends existed)"
            )
        # Device discovery logs (e.g. "failed call to cuInit" on CPU-only machines) happen here, not later.
        if name == "tf":
            sys.modules["tensorflow"].config.list_physical_devices()
        elif name == "flax":
            sys.modules["jax"].devices()
    return package


def model_class(backend: str, torch_class: str):
    """The backend class named like HF's PyTorch class ``torch_class`` (TF/Flax add their prefix)."""
    package = import_backend(backend)
    return getattr(package, _CLASS_PREFIX[backend] + torch_class)


def load_model(backend: str, torch_class: str, directory: str | os.PathLike):
    """``from_pretrained`` of a backend class on an HF-layout directory."""
    return model_class(backend, torch_class).from_pretrained(str(Path(directory)))


def forward_fn(backend: str, model, compile: bool = True) -> Forward:
    """A function ``(input_ids, attention_mask) -> logits`` (numpy in, numpy out) for ``model``.

    ``compile=True`` uses each framework's compiler: ``jax.jit`` for Flax,
    ``tf.function(jit_compile=True)`` for TensorFlow; PyTorch runs eagerly under ``no_grad``.
    """
    if backend == "torch":
        import torch

        model.eval()

        def run_torch(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = model(
                    input_ids=torch.from_numpy(np.asarray(ids, np.int64)),
                    attention_mask=torch.from_numpy(np.asarray(mask, np.int64)),
                )
            return out.logits.detach().cpu().numpy()

        return run_torch

    if backend == "tf":
        import tensorflow as tf

        def call(ids, mask):
            return model(input_ids=ids, attention_mask=mask, training=False).logits

        fn = tf.function(call, jit_compile=True) if compile else call

        def run_tf(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            out = fn(tf.constant(np.asarray(ids, np.int32)), tf.constant(np.asarray(mask, np.int32)))
            return np.asarray(out)

        return run_tf

    if backend == "flax":
        import jax

        def apply(params, ids, mask):
            return model(ids, attention_mask=mask, params=params, train=False).logits

        fn = jax.jit(apply) if compile else apply

        def run_flax(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            out = fn(model.params, np.asarray(ids, np.int32), np.asarray(mask, np.int32))
            return np.asarray(jax.device_get(out))

        return run_flax

    raise DemoError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
