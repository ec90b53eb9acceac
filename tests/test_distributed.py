"""Training across processes (issue 17): two processes on loopback per framework, each on its own engine.

- torch: ``torchrun --nproc_per_node 2`` with DDP and with FSDP2 (gloo);
- tf: ``MultiWorkerMirroredStrategy``, two workers (``TF_CONFIG`` on 127.0.0.1 ports), Keras ``fit``;
- flax: ``jax.distributed`` with two CPU processes (gloo), a global mesh.

Every run is compared with the same backend in one process on the full batch, and with HF
transformers' PyTorch model trained on the same batches (torch.optim.SGD): loss of every step and
every parameter within 1e-5. The checkpoint rank 0 saved loads in the other two frameworks with the
logits of HF's model loaded from it. Jobs run in their own session under a timeout; the fixture kills
every process a job started (and fails the test if one outlived a job that returned).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import conversion
from tests.backends import get_adapter
from tests.reference import ATOL, canonical_state_dict, tiny_config
from xlmr import distributed as D

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCH, LR = 3, 8, 0.5
JOB_TIMEOUT = 240  # seconds; a job normally takes 5 to 20


# -- jobs that leave nothing behind -----------------------------------------------------------------
def _tagged(tag: str) -> list:
    """Live processes whose environment carries ``XLMR_TEST_JOB=tag``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("XLMR_TEST_JOB") == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill(procs: list) -> None:
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class Jobs:
    """Start commands in their own session with a tag in their environment; kill all on the way out."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen, str]] = []

    def run(
        self, args: list[str], env: dict[str, str] | None = None, timeout: float = JOB_TIMEOUT
    ) -> tuple[int, str]:
        """Run ``args`` to the end (or the timeout: a failure); returns (exit status, stdout + stderr)."""
        tag = uuid.uuid4().hex
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "XLA_FLAGS": "",  # one CPU device per JAX process
            "XLMR_TEST_JOB": tag,
            **(env or {}),
        }
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started.append((proc, tag))
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc, tag)
            out, _ = proc.communicate()
            pytest.fail(f"{' '.join(args[:6])}... did not finish in {timeout} s:\n{out[-4000:]}")
        left = _tagged(tag)
        if left:
            _kill(left)
            pytest.fail(f"{len(left)} processes outlived the job: {[p.pid for p in left]}\n{out[-2000:]}")
        return proc.returncode, out

    def kill(self, proc: subprocess.Popen, tag: str) -> None:
        left = _tagged(tag)  # torchrun starts each worker in a session of its own: found by tag
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _kill(left + _tagged(tag))
        proc.wait()


@pytest.fixture
def jobs():
    pytest.importorskip("psutil")
    jobs = Jobs()
    try:
        yield jobs
    finally:
        for proc, tag in jobs.started:
            jobs.kill(proc, tag)


# -- a tiny checkpoint, data, and the references ---------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny sequence classifier (HF's weights, perturbed), 24 examples, HF's SGD run on them."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch

    from tests.reference import hf_torch_model

    root = tmp_path_factory.mktemp("distributed")
    config = tiny_config(num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = hf_torch_model("sequence_classification", config)
    init = canonical_state_dict(hf, config, "sequence_classification")
    conversion.save_pretrained(init, config, "sequence_classification", root / "model")
    rng = np.random.default_rng(0)
    with open(root / "data.jsonl", "w", encoding="utf-8") as f:
        for _ in range(20):  # 20 rows: the 3 batches of 8 wrap around
            n = int(rng.integers(4, 12))
            ids = [0, *rng.integers(3, config.vocab_size, n - 2).tolist(), 2]
            f.write(json.dumps({"input_ids": ids, "label": ids[1] % 3}) + "\n")
    batches = D.global_batches(D.read_examples(root / "data.jsonl"), BATCH, STEPS, config.pad_token_id)
    # HF's PyTorch model on the full batches: the reference every run is compared with.
    hf.train()
    optimizer = torch.optim.SGD(hf.parameters(), lr=LR)
    losses = []
    for batch in batches:
        optimizer.zero_grad()
        loss = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return {
        "root": root,
        "config": config,
        "init": init,
        "batches": batches,
        "hf_losses": losses,
        "hf_params": canonical_state_dict(hf, config, "sequence_classification"),
    }


def _command(backend: str, setup: dict, out: Path, *extra: str) -> list[str]:
    return [
        "--backend",
        backend,
        "--model",
        str(setup["root"] / "model"),
        "--data",
        str(setup["root"] / "data.jsonl"),
        "--batch-size",
        str(BATCH),
        "--steps",
        str(STEPS),
        "--lr",
        str(LR),
        "--output",
        str(out / "checkpoint"),
        "--report-dir",
        str(out / "reports"),
        *extra,
    ]


def _params(directory: Path) -> dict[str, np.ndarray]:
    return conversion.load_pretrained(directory, "sequence_classification")[1].state_dict


def _assert_params_close(actual: dict, expected: dict, what: str) -> None:
    assert set(actual) == set(expected), sorted(set(actual) ^ set(expected))
    worst = max(expected, key=lambda k: float(np.abs(actual[k] - expected[k]).max()))
    err = float(np.abs(actual[worst] - expected[worst]).max())
    assert err < ATOL, f"{what}: {worst} differs by {err:.3g}"


def _check_job(backend: str, setup: dict, out: Path, parallel: str = "ddp") -> None:
    """The 2-process run against one process of the same backend and against HF; rank 0 alone saved."""
    reports = [json.loads((out / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["saved"] == str(out / "checkpoint") and reports[1]["saved"] is None
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "reports"]  # nothing else written
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["config.json", "model.safetensors"]
    two = _params(out / "checkpoint")
    moved = max(float(np.abs(two[k] - setup["init"][k]).max()) for k in two)
    assert moved > 1e-2  # the steps changed the weights

    # one process of the same backend, full batch
    single_dir = out / "single"
    run = D.TrainingRun(
        model=str(setup["root"] / "model"),
        batches=setup["batches"],
        learning_rate=LR,
        output=str(single_dir),
        parallel=parallel,
    )
    single = D.train(backend, run, D.ProcessEnv())
    assert single.saved == str(single_dir)
    for report in reports:  # every rank reports the loss of the global batch
        np.testing.assert_allclose(report["losses"], single.losses, atol=ATOL, rtol=0)
    _assert_params_close(two, _params(single_dir), f"{backend} 2 processes vs 1")
    # the independent reference: HF's PyTorch model, torch.optim.SGD on the full batches
    np.testing.assert_allclose(reports[0]["losses"], setup["hf_losses"], atol=ATOL, rtol=0)
    _assert_params_close(two, setup["hf_params"], f"{backend} 2 processes vs HF")


def _assert_loads_everywhere(directory: Path, setup: dict) -> None:
    """The checkpoint in all three backends: logits equal to HF's model loaded from it."""
    import torch
    import transformers

    batch = {k: v for k, v in setup["batches"][0].items() if k != "labels"}
    hf = transformers.XLMRobertaForSequenceClassification.from_pretrained(
        directory, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        expected = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}).logits.numpy()
    for backend in D.BACKENDS:
        adapter = get_adapter(backend)
        model = D.model_class(backend).from_pretrained(str(directory))
        if hasattr(model, "eval"):
            model.eval()
        logits = adapter.forward(model, batch)["logits"]
        err = float(np.abs(logits - expected).max())
        assert err < ATOL, f"{backend} loads the checkpoint with logits {err:.3g} from HF's"


# -- the three engines, two processes each ----------------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_two_processes_equal_one(jobs, setup, tmp_path, parallel):
    pytest.importorskip("torch")
    rc, out = jobs.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(D._free_ports(1, "127.0.0.1")[0]),
            "-m",
            "xlmr.distributed",
            *_command("torch", setup, tmp_path, "--parallel", parallel),
        ]
    )
    assert rc == 0, out[-4000:]
    _check_job("torch", setup, tmp_path, parallel)
    if parallel == "ddp":
        _assert_loads_everywhere(tmp_path / "checkpoint", setup)


@pytest.mark.hf
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_two_processes_equal_one(jobs, setup, tmp_path, backend):
    get_adapter(backend)
    rc, out = jobs.run(
        [
            sys.executable,
            "-m",
            "xlmr.distributed",
            "--nproc-per-node",
            "2",
            *_command(backend, setup, tmp_path),
        ]
    )
    assert rc == 0, out[-4000:]
    _check_job(backend, setup, tmp_path)
    _assert_loads_everywhere(tmp_path / "checkpoint", setup)


# -- the process environment, checked once for the three backends --------------------------------------------
TORCHRUN = {
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "10.1.2.3",
    "MASTER_PORT": "29500",
}


def _tf(cluster, kind="worker", index=0) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_torchrun_variables_are_read():
    env = D.process_env("torch", TORCHRUN)
    assert (env.rank, env.world_size, env.local_rank, env.coordinator) == (1, 2, 1, "10.1.2.3:29500")
    assert env.source == "WORLD_SIZE" and not env.is_chief and env.distributed
    assert D.process_env("torch", {}) == D.ProcessEnv()  # nothing set: one process
    assert D.process_env("flax", {}).world_size == 1 and D.process_env("tf", {}).world_size == 1


def test_jax_reads_the_same_variables_and_its_own_coordinator():
    assert D.process_env("flax", TORCHRUN).coordinator == "10.1.2.3:29500"
    env = D.process_env("flax", {"RANK": "0", "WORLD_SIZE": "4", "JAX_COORDINATOR_ADDRESS": "host-a:1234"})
    assert (env.rank, env.world_size, env.coordinator) == (0, 4, "host-a:1234")
    with pytest.raises(D.DistributedEnvError, match="JAX_COORDINATOR_ADDRESS='host-a'"):
        D.process_env("flax", {"RANK": "0", "WORLD_SIZE": "2", "JAX_COORDINATOR_ADDRESS": "host-a"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"MASTER_PORT": None}, "MASTER_PORT is not set"),
        ({"RANK": None}, "RANK is not set"),
        ({"WORLD_SIZE": None, "RANK": None}, "RANK, WORLD_SIZE are not set"),
        ({"RANK": "one"}, "RANK='one' is not an integer"),
        ({"WORLD_SIZE": "2.0"}, "WORLD_SIZE='2.0' is not an integer"),
        ({"RANK": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
        ({"RANK": "-1"}, "RANK=-1 must be at least 0"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
        ({"MASTER_PORT": "http"}, "MASTER_PORT='http' is not an integer"),
        ({"MASTER_PORT": "70000"}, "MASTER_PORT=70000 is outside 1..65535"),
        ({"MASTER_ADDR": " "}, "MASTER_ADDR is not set"),
        ({"LOCAL_RANK": "x"}, "LOCAL_RANK='x' is not an integer"),
        ({"LOCAL_WORLD_SIZE": "1"}, "LOCAL_RANK=1 is not below LOCAL_WORLD_SIZE=1"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_bad_rank_variables_are_named(backend, change, message):
    environ = {k: v for k, v in {**TORCHRUN, **change}.items() if v is not None}
    with pytest.raises(D.DistributedEnvError, match=message.replace("(", r"\(").replace(".", r"\.")):
        D.process_env(backend, environ)


def test_tf_config_is_read():
    workers = ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"]
    env = D.process_env("tf", _tf({"worker": workers}, index=2))
    assert (env.rank, env.world_size, env.coordinator, env.task_type) == (2, 3, workers[0], "worker")
    assert env.tf_cluster() == {"worker": workers} and env.task_index() == 2
    chief = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    env = D.process_env("tf", _tf(chief, "worker", 0))  # a chief is rank 0, workers follow
    assert (env.rank, env.world_size, env.task_index(), env.workers) == (1, 3, 0, ("h0:1", "h1:1", "h2:1"))
    assert env.tf_cluster() == chief
    assert D.process_env("tf", _tf(chief, "chief", 0)).is_chief
    assert D.process_env("tf", {"TF_CONFIG": D.tf_config(workers, 1)}).rank == 1


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": '}, "TF_CONFIG is not valid JSON"),
        ({"TF_CONFIG": "[1, 2]"}, "TF_CONFIG must be a JSON object"),
        ({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'}, 'TF_CONFIG has no "cluster"'),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, 'TF_CONFIG has no "task"'),
        (_tf({"worker": ["a:1", "b:1"]}, index=2), "TF_CONFIG task index 2 is out of range"),
        (_tf({"worker": ["a:1", "b:1"]}, index=-1), "TF_CONFIG task index -1 is out of range"),
        (_tf({"worker": ["a:1", "b:1"]}, index="1"), "TF_CONFIG task index '1' is not an integer"),
        (_tf({"worker": ["a:1"]}, kind="chief"), "TF_CONFIG task type 'chief' is not one of"),
        (_tf({"worker": ["a:1"], "ps": ["p:1"]}), "TF_CONFIG cluster has task types \\['ps'\\]"),
        (_tf({"worker": "a:1"}), 'TF_CONFIG cluster\\["worker"\\] must be a list'),
        (_tf({"worker": ["a:1", "a"]}), "TF_CONFIG cluster\\[\"worker\"\\]\\[1\\]='a' is not a host:port"),
        (_tf({"worker": ["a:1", "a:1"]}), "more than once"),
        (_tf({"worker": []}), 'TF_CONFIG cluster\\["worker"\\] is empty'),
        ({**_tf({"worker": ["a:1", "b:1"]}, index=1), "RANK": "0"}, "RANK=0 disagrees with TF_CONFIG"),
        ({**TORCHRUN}, "TF_CONFIG is not set, but WORLD_SIZE=2"),
    ],
)
def test_bad_tf_config_is_named(environ, message):
    with pytest.raises(D.DistributedEnvError, match=message):
        D.process_env("tf", environ)


def test_a_batch_the_world_size_does_not_divide_names_both():
    with pytest.raises(ValueError, match=r"global batch size 10 does not split evenly over WORLD_SIZE=4"):
        D.check_batch_size(10, D.process_env("torch", {**TORCHRUN, "WORLD_SIZE": "4"}))
    tf_env = D.process_env("tf", _tf({"worker": ["a:1", "b:1", "c:1"]}))
    with pytest.raises(
        ValueError, match=r"global batch size 8 does not split evenly over the 3 tasks of TF_CONFIG"
    ):
        D.check_batch_size(8, tf_env)
    with pytest.raises(ValueError, match="batch\\['labels'\\] has 3 rows, batch\\['input_ids'\\] has 4"):
        D.local_batch({"input_ids": np.zeros((4, 2)), "labels": np.zeros(3)}, D.ProcessEnv())
    assert D.check_batch_size(12, tf_env) == 4


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_split_a_global_batch_into_contiguous_equal_blocks(world):
    batch = {"input_ids": np.arange(24).reshape(12, 2), "labels": np.arange(12)}
    parts = [D.local_batch(batch, D.ProcessEnv(rank=r, world_size=world)) for r in range(world)]
    assert [len(p["labels"]) for p in parts] == [12 // world] * world
    for key in batch:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), batch[key])
    assert D.local_slice(12, world - 1, world) == slice(12 - 12 // world, 12)


def test_global_batches_pad_and_wrap(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input_ids": [0, 5, 2], "label": 1}\n\n{"input_ids": [0, 7, 8, 9, 2], "label": 0}\n')
    examples = D.read_examples(path)
    batches = D.global_batches(examples, batch_size=3, steps=2, pad_token_id=1)
    np.testing.assert_array_equal(batches[0]["labels"], [1, 0, 1])
    np.testing.assert_array_equal(batches[1]["labels"], [0, 1, 0])
    np.testing.assert_array_equal(batches[0]["input_ids"][0], [0, 5, 2, 1, 1])
    np.testing.assert_array_equal(batches[0]["attention_mask"][0], [1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="example 1 has 5 tokens, more than max_length=4"):
        D.global_batches(examples, 2, 1, max_length=4)
    path.write_text('{"input_ids": [0, 5, 2], "label": 1}\n{"input_ids": [0, 5], "label": "x"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:2: \"label\" must be an integer"):
        D.read_examples(path)


# -- the command: bad environments fail fast, named; the launcher leaves nothing behind -------------------------
@pytest.mark.parametrize(
    "backend, environ, message",
    [
        ("tf", {"TF_CONFIG": "{not json"}, "TF_CONFIG is not valid JSON"),
        (
            "tf",
            {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "TF_CONFIG is not set",
        ),
        ("torch", {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "RANK is not set"),
        ("flax", {**TORCHRUN, "RANK": "5"}, "RANK=5 is not below WORLD_SIZE=2"),
        (
            "torch",
            {**TORCHRUN, "WORLD_SIZE": "3"},
            "global batch size 8 does not split evenly over WORLD_SIZE=3",
        ),
    ],
)
def test_the_command_names_a_bad_environment(jobs, tmp_path, backend, environ, message):
    clean = {k: "" for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TF_CONFIG")}
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "d.jsonl").write_text('{"input_ids": [0, 5, 2], "label": 1}\n')
    command = ["--backend", backend, "--model", str(tmp_path / "model"), "--data", str(tmp_path / "d.jsonl")]
    rc, out = jobs.run(
        [sys.executable, "-m", "xlmr.distributed", *command, "--batch-size", "8", "--steps", "1"],
        env={**clean, **environ},
        timeout=60,
    )
    assert rc == 1, out
    assert message in out and "Traceback" not in out, out


def test_core_module_imports_no_framework():
    code = "import sys, xlmr.distributed\nprint([m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


_WORKER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    rank = int(os.environ["RANK"])
    pathlib.Path(sys.argv[1], f"started{rank}").write_text(os.environ.get("TF_CONFIG", ""))
    if rank == int(sys.argv[2]):
        sys.exit(3)
    time.sleep(300)
    """
)


def _launcher(tmp_path: Path, failing_rank: int, timeout: float | None = None) -> list[str]:
    (tmp_path / "worker.py").write_text(_WORKER)
    command = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path), str(failing_rank)]
    code = f"import sys; from xlmr.distributed import launch; sys.exit(launch({command!r}, 'tf', 2, timeout={timeout!r}))"
    return [sys.executable, "-c", code]


def test_launcher_stops_the_others_when_one_process_fails(jobs, tmp_path):
    start = time.monotonic()
    rc, out = jobs.run(_launcher(tmp_path, failing_rank=1), timeout=60)  # fails if a worker outlives it
    assert rc == 3, out
    assert time.monotonic() - start < 30
    configs = [json.loads((tmp_path / f"started{r}").read_text()) for r in (0, 1)]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    assert configs[0]["cluster"] == configs[1]["cluster"] and len(configs[0]["cluster"]["worker"]) == 2


def test_launcher_timeout_stops_every_process(jobs, tmp_path):
    rc, out = jobs.run(_launcher(tmp_path, failing_rank=-1, timeout=3), timeout=60)
    assert rc == 124 and "timeout" in out, out


def test_workers_die_with_a_killed_launcher(jobs, tmp_path):
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        _launcher(tmp_path, failing_rank=-1),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "XLMR_TEST_JOB": tag},
        start_new_session=True,
    )
    jobs.started.append((proc, tag))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"started{r}").exists() for r in (0, 1)):
        assert time.monotonic() < deadline and proc.poll() is None, "the workers did not start"
        time.sleep(0.1)
    proc.kill()  # the launcher alone, SIGKILL: no handler runs
    proc.wait()
    deadline = time.monotonic() + 10
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _tagged(tag), "workers outlived their launcher"


def test_a_process_env_outside_its_world_is_refused():
    with pytest.raises(ValueError, match=r"rank 2 is outside \[0, world_size=2\)"):
        D.ProcessEnv(rank=2, world_size=2)


def test_the_command_does_not_overwrite_an_output_unasked(jobs, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "d.jsonl").write_text('{"input_ids": [0, 5, 2], "label": 1}\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.safetensors").write_bytes(b"earlier run")
    command = ["--backend", "torch", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "d.jsonl")]
    clean = {k: "" for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TF_CONFIG")}
    rc, out = jobs.run(
        [sys.executable, "-m", "xlmr.distributed", *command, "--batch-size", "1", "--steps", "1"]
        + ["--output", str(tmp_path / "out")],
        env=clean,
        timeout=60,
    )
    assert rc == 1 and "exists and is not empty (pass --overwrite to replace it)" in out, out
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"earlier run"
