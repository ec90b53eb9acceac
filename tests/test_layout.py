"""Project invariants: the README's Quickstart is what CI runs; the three backends mirror each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from xlmr import HEADS

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"xlmr_torch": "", "xlmr_tf": "TF", "xlmr_flax": "Flax"}


def _quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_has_two_commands_and_ci_runs_the_second():
    commands = _quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    assert "xlmr-demo" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci, f"{commands[1]!r} is not a line of .ci/run"


def test_backends_have_the_same_files():
    files = {b: sorted(p.name for p in (ROOT / b).glob("*.py")) for b in BACKENDS}
    assert len({tuple(v) for v in files.values()}) == 1, files


def _classes(backend: str) -> list[str]:
    tree = ast.parse((ROOT / backend / "modeling.py").read_text(encoding="utf-8"))
    prefix = BACKENDS[backend]
    names = [
        n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith(prefix + "XLMRoberta")
    ]
    # Flax keeps HF's linen "...Module" classes beside the wrappers; compare the shared names.
    return [
        n.removeprefix(prefix)
        for n in names
        if not n.endswith("Module") and n != "FlaxXLMRobertaLayerCollection"
    ]


@pytest.mark.parametrize("backend", ["xlmr_tf", "xlmr_flax"])
def test_modeling_classes_in_the_same_order(backend):
    torch_order = _classes("xlmr_torch")
    theirs = [c for c in _classes(backend) if c in torch_order]
    assert theirs == [c for c in torch_order if c in theirs]
    missing = set(torch_order) - set(_classes(backend)) - {"XLMRobertaMainLayer"}
    assert not missing, f"{backend} lacks {sorted(missing)}"
    for head in HEADS.values():
        assert head.class_name({"xlmr_tf": "tf", "xlmr_flax": "flax"}[backend]) in {
            BACKENDS[backend] + c for c in _classes(backend)
        }


def test_public_surface_is_the_same():
    surfaces = {}
    for backend, prefix in BACKENDS.items():
        tree = ast.parse((ROOT / backend / "__init__.py").read_text(encoding="utf-8"))
        all_ = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")
        surfaces[backend] = [ast.literal_eval(e).removeprefix(prefix) for e in all_.elts]
    assert len({tuple(v) for v in surfaces.values()}) == 1, surfaces
