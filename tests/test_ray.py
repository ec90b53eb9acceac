"""Corpus-scale inference on Ray (``xlmr.ray_jobs``, ``xlmr embed --ray``, ``xlmr run --ray``).

One local Ray cluster (2 CPUs, loopback, no dashboard) for the module, shut down at the end and
checked to leave no process behind. Every job's output is compared with the single-process API
on the same texts: ``SentenceEncoder.encode`` (torch, flax) and ``xlmr.pipeline`` (torch, flax),
within 1e-5; every input row must be in the output exactly once. Killed jobs: an actor's process
killed halfway (Ray restarts it and the job completes), and the whole driver process killed halfway
(the rerun writes only the missing files).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import xlmr
from tests.reference import hf_torch_model, tiny_config
from tests.sentence_reference import TEXTS, build_backbone, encoder_class, train_tokenizer
from xlmr import cli, cli_embed, ray_jobs

pytestmark = [pytest.mark.distributed, pytest.mark.hf]  # hf: the tiny checkpoints are HF-built
ROOT = Path(__file__).resolve().parent.parent
ATOL = 1e-5
JOB_TIMEOUT = 240  # seconds for any one job; a hang fails the test instead of the suite
LABELS = {0: "neg", 1: "neu", 2: "pos"}


# -- the cluster, the models, the corpus ---------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs on 127.0.0.1; yields its address. Leaves no process behind."""
    ray = pytest.importorskip("ray", reason="needs ray[data] (pip install 'xlmr[ray]')")
    pytest.importorskip("ray.data")
    psutil = pytest.importorskip("psutil")
    if ray.is_initialized():
        ray.shutdown()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        },
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        ours = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        _, alive = psutil.wait_procs(ours, timeout=20)
        for proc in alive:
            proc.kill()
        assert not alive, f"Ray processes outlived ray.shutdown(): {[p.pid for p in alive]}"


def _workers(name: str = "_EmbedWorker") -> list:
    """This cluster's live actor processes of ``name`` (Ray titles them ``ray::MapWorker(MapBatches(<name>))``).

    The cluster's processes descend from this one (ray.init started its raylet), the actors of a
    driver in another process included."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(f"MapBatches({name})" in part for part in proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A sentence-transformers directory (mean pooling) and a 3-label sequence classifier, tiny."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("ray_models")
    encoder = encoder_class("torch").from_pretrained(build_backbone(root))
    encoder.save_pretrained(root / "st")
    tokenizer = train_tokenizer(root / "tok")
    config = tiny_config(vocab_size=len(tokenizer), id2label=LABELS, num_labels=3)
    hf_torch_model("sequence_classification", config, seed=5).save_pretrained(root / "classifier")
    qa_config = tiny_config(vocab_size=len(tokenizer), num_labels=2, max_position_embeddings=130)
    hf_torch_model("question_answering", qa_config, seed=6).save_pretrained(root / "qa")
    for f in (root / "tok").iterdir():
        shutil.copy(f, root / "classifier" / f.name)
        shutil.copy(f, root / "qa" / f.name)
    return {"st": root / "st", "classifier": root / "classifier", "qa": root / "qa"}


def _corpus(directory: Path, n_parquet: int = 36, n_jsonl: int = 24) -> dict:
    """a.parquet (int ids, small row groups), sub/b.jsonl (no ids, blank lines), empty.parquet.

    Returns {id: text} of every row, ids as the job writes them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    a = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(n_parquet)]
    ids = [1000 + i for i in range(n_parquet)]
    pq.write_table(pa.table({"id": ids, "text": a, "other": list(range(n_parquet))}), directory / "a.parquet",
                   row_group_size=5)  # fmt: skip
    (directory / "sub").mkdir(exist_ok=True)
    b = [TEXTS[(i * 5) % len(TEXTS)] + " " * (i % 3) for i in range(n_jsonl)]
    lines = [json.dumps({"text": t, "n": i}, ensure_ascii=False) for i, t in enumerate(b)]
    lines.insert(3, "")  # blank lines are not records
    lines.insert(9, "   ")
    (directory / "sub" / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), directory / "empty.parquet")
    return {**dict(zip(ids, a)), **{f"sub/b.jsonl:{i}": t for i, t in enumerate(b)}}


def _read(output_dir: Path, column: str, id_column: str = "id") -> dict:
    """{id: value} of every output file; fails on an id written twice or a leftover temporary."""
    import pyarrow.parquet as pq

    files = sorted(p for p in output_dir.rglob("*.parquet"))
    temporaries = [p for p in output_dir.rglob(".*") if p.is_file()]
    assert not temporaries, temporaries
    ids, values = [], []
    for path in files:
        table = pq.read_table(path)
        ids += table.column(id_column).to_pylist()
        values += table.column(column).to_pylist()
    assert len(ids) == len(set(ids)), "an id was written twice"
    return dict(zip(ids, values))


def _within(seconds: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a thread; a failure if it runs longer than ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish in {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _assert_embeddings(got: dict, expected: dict, model: Path, backend: str = "torch", **options) -> None:
    assert sorted(got, key=str) == sorted(expected, key=str), "every input row exactly once"
    keys = list(expected)
    reference = encoder_class(backend).from_pretrained(model).encode([expected[k] for k in keys], **options)
    np.testing.assert_allclose(np.array([got[k] for k in keys], np.float32), reference, atol=ATOL, rtol=0)


# -- sentence embeddings ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_embed_equals_the_single_process_encoder(backend, cluster, models, tmp_path):
    expected = _corpus(tmp_path / "data")
    out = tmp_path / "out"
    inputs = [tmp_path / "data" / "a.parquet", str(tmp_path / "data" / "sub" / "*.jsonl"),
              tmp_path / "data" / "empty.parquet"]  # fmt: skip
    result = _within(JOB_TIMEOUT, ray_jobs.embed, inputs, out, model=models["st"], backend=backend,
                     rows_per_file=7, num_actors=2 if backend == "torch" else 1)  # fmt: skip
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert names == [*(f"a-{i:05d}.parquet" for i in range(6)), "empty-00000.parquet",
                     *(f"sub/b-{i:05d}.parquet" for i in range(4))]  # fmt: skip
    assert [p.relative_to(out).as_posix() for p in result.outputs] == names
    assert (result.files_written, result.files_skipped, result.rows_written) == (11, 0, 60)
    got = _read(out, "embedding")
    _assert_embeddings(got, expected, models["st"], backend)
    import pyarrow.parquet as pq

    schema = pq.read_schema(out / "a-00000.parquet")
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[32]"
    assert (
        str(schema.field("id").type) == "int64"
        and str(pq.read_schema(out / "sub/b-00000.parquet").field("id").type) == "string"
    )
    assert pq.read_metadata(out / "empty-00000.parquet").num_rows == 0
    assert str(pq.read_schema(out / "empty-00000.parquet").field("embedding").type).endswith("[32]")


def test_rerun_skips_complete_files_and_redoes_the_rest(cluster, models, tmp_path):
    expected = _corpus(tmp_path / "data")
    out = tmp_path / "out"
    args = dict(model=models["st"], rows_per_file=10, num_actors=2, normalize_embeddings=True)
    first = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, **args)
    assert [p.name for p in first.outputs] == ["a-00000.parquet", "a-00001.parquet", "a-00002.parquet",
                                               "a-00003.parquet", "empty-00000.parquet"]  # fmt: skip
    # The directory input takes its own files only (sub/ is not read); a rerun writes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in first.outputs}
    again = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, **args)
    assert (again.files_written, again.files_skipped, again.rows_written) == (0, 5, 0)
    assert {p: p.stat().st_mtime_ns for p in first.outputs} == mtimes
    # A killed run's state: one file missing, one cut short, a writer's temporary left behind.
    (out / "a-00001.parquet").unlink()
    data = (out / "a-00002.parquet").read_bytes()
    (out / "a-00002.parquet").write_bytes(data[: len(data) // 2])
    (out / ".a-00003.parquet.abc123.tmp").write_bytes(b"partial")
    (out / "unrelated.tmp").write_bytes(b"not ours")
    third = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, **args)
    assert (third.files_written, third.files_skipped, third.rows_written) == (2, 3, 20)
    assert not (out / ".a-00003.parquet.abc123.tmp").exists() and (out / "unrelated.tmp").exists()
    (out / "unrelated.tmp").unlink()
    for p in ("a-00000.parquet", "a-00003.parquet"):
        assert (out / p).stat().st_mtime_ns == mtimes[out / p]
    parquet_rows = {k: v for k, v in expected.items() if isinstance(k, int)}
    _assert_embeddings(_read(out, "embedding"), parquet_rows, models["st"], normalize_embeddings=True)
    # Other settings in the same directory are refused, naming what changed; overwrite=True redoes all.
    with pytest.raises(ray_jobs.JobError, match=r"other settings \(options: .*normalize_embeddings"):
        ray_jobs.embed(tmp_path / "data", out, model=models["st"], rows_per_file=10)
    with pytest.raises(ray_jobs.JobError, match="rows_per_file: 10 -> 7"):
        ray_jobs.embed(tmp_path / "data", out, **{**args, "rows_per_file": 7})
    redo = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, **{**args, "rows_per_file": 12},
                   overwrite=True)  # fmt: skip
    assert (redo.files_written, redo.files_skipped) == (4, 0)
    assert sorted(p.name for p in out.glob("*.parquet")) == [p.name for p in redo.outputs]  # a-00003 removed
    _assert_embeddings(_read(out, "embedding"), parquet_rows, models["st"], normalize_embeddings=True)


def test_an_actor_killed_halfway_is_restarted_and_every_row_written_once(cluster, models, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(400)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"text": texts}), tmp_path / "data" / "big.parquet")
    out = tmp_path / "out"
    seen: dict = {}

    def kill_one_actor_halfway():
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            done = len(list(out.glob("*.parquet"))) if out.is_dir() else 0
            actors = _workers() if done >= 2 else []
            if actors:
                seen["done"] = done
                os.kill(actors[0].pid, signal.SIGKILL)
                seen["killed"] = actors[0].pid
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_actor_halfway, daemon=True)
    killer.start()
    result = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, model=models["st"], rows_per_file=5,
                     num_actors=2)  # fmt: skip
    killer.join(5)
    assert "killed" in seen and 2 <= seen["done"] < 80, seen  # an actor died with files still to write
    assert result.files_written + result.files_skipped == 80
    got = _read(out, "embedding")
    _assert_embeddings(got, {f"big.parquet:{i}": t for i, t in enumerate(texts)}, models["st"])
    rerun = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, model=models["st"], rows_per_file=5)
    assert (rerun.files_written, rerun.files_skipped) == (0, 80)


def test_the_job_killed_halfway_completes_on_rerun(cluster, models, tmp_path):
    """The driver process (and with it the job's actors) killed with SIGKILL mid-run; rerun in this one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"{TEXTS[(i * 7) % len(TEXTS)]} {i}" for i in range(600)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"text": texts, "id": [f"doc-{i}" for i in range(600)]}),
                   tmp_path / "data" / "corpus.parquet")  # fmt: skip
    out = tmp_path / "out"
    script = (
        "import sys\nfrom xlmr import ray_jobs\n"
        "ray_jobs.embed(sys.argv[1], sys.argv[2], model=sys.argv[3], address=sys.argv[4], rows_per_file=5, "
        "num_actors=2)\nprint('finished')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-c", script, str(tmp_path / "data"), str(out), str(models["st"]), cluster]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            done = len(list(out.glob("*.parquet"))) if out.is_dir() else 0
            if done >= 3:
                break
            time.sleep(0.005)
        assert proc.poll() is None, (
            f"the job ended before it could be killed:\n{proc.stdout.read().decode()[-3000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        proc.stdout.close()
    written_before = len(list(out.glob("*.parquet")))
    assert 3 <= written_before < 120, written_before  # killed halfway
    rerun = _within(JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", out, model=models["st"], rows_per_file=5,
                    num_actors=2)  # fmt: skip
    assert rerun.files_skipped >= written_before and rerun.files_written == 120 - rerun.files_skipped
    assert rerun.rows_written == 5 * rerun.files_written
    _assert_embeddings(_read(out, "embedding"), {f"doc-{i}": t for i, t in enumerate(texts)}, models["st"])


# -- task pipelines --------------------------------------------------------------------------------
def _assert_classifications(got: dict, expected_texts: dict, model: Path, backend: str) -> None:
    assert sorted(got, key=str) == sorted(expected_texts, key=str)
    keys = list(expected_texts)
    pipe = xlmr.pipeline("text-classification", str(model), backend=backend, top_k=None, truncation=True)
    reference = pipe([expected_texts[k] for k in keys])
    for key, ref in zip(keys, reference):
        result = json.loads(got[key])
        assert [r["label"] for r in result] == [r["label"] for r in ref]
        np.testing.assert_allclose([r["score"] for r in result], [r["score"] for r in ref], atol=ATOL, rtol=0)


def test_run_task_equals_the_single_process_pipeline(cluster, models, tmp_path):
    expected = _corpus(tmp_path / "data", n_parquet=11, n_jsonl=9)
    out = tmp_path / "out"
    result = _within(JOB_TIMEOUT, ray_jobs.run_task, "sentiment-analysis", [tmp_path / "data" / "a.parquet",
                     tmp_path / "data" / "sub" / "b.jsonl"], out, model=models["classifier"], backend="flax",
                     rows_per_file=4, num_actors=1, top_k=None, truncation=True, batch_size=3)  # fmt: skip
    assert (result.files_written, result.rows_written) == (6, 20)
    _assert_classifications(_read(out, "result"), expected, models["classifier"], "flax")
    manifest = json.loads((out / ray_jobs.MANIFEST).read_text())
    assert manifest["task"] == "text-classification" and manifest["call_options"] == {
        "top_k": None,
        "truncation": True,
    }
    assert manifest["pipeline_options"] == {"batch_size": 3}


def test_question_answering_reads_each_rows_question(cluster, models, tmp_path):
    contexts = [t for t in TEXTS if len(t) > 12][:5]
    questions = ["Who jumps?", "Où est le chien ?", "Was springt?", "¿Quién salta?", "what is it?"]
    (tmp_path / "data").mkdir()
    rows = [{"id": f"q{i}", "context": c, "question": q} for i, (c, q) in enumerate(zip(contexts, questions))]
    (tmp_path / "data" / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    result = _within(JOB_TIMEOUT, ray_jobs.run_task, "question-answering", tmp_path / "data", tmp_path / "out",
                     model=models["qa"], text_column="context", question_column="question", rows_per_file=2,
                     num_actors=1, top_k=2)  # fmt: skip
    assert (result.files_written, result.rows_written) == (3, 5)
    got = _read(tmp_path / "out", "result")
    qa = xlmr.pipeline("question-answering", str(models["qa"]))
    for row in rows:
        expected = qa(question=row["question"], context=row["context"], top_k=2)
        answers = json.loads(got[row["id"]])
        assert [(a["answer"], a["start"], a["end"]) for a in answers] == [
            (e["answer"], e["start"], e["end"]) for e in expected
        ]
        np.testing.assert_allclose([a["score"] for a in answers], [e["score"] for e in expected], atol=ATOL)


def test_xlmr_run_ray_and_xlmr_embed_ray(cluster, models, tmp_path, capsys):
    """The commands: the same jobs, a one-line summary; --id-column and --text-column honoured."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    texts = [f"{t} !" for t in TEXTS]
    lines = [json.dumps({"body": t, "key": f"k{i}"}, ensure_ascii=False) for i, t in enumerate(texts)]
    (data / "part-1.jsonl").write_text("\n".join(lines[:7]) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"body": texts[7:], "key": [f"k{i}" for i in range(7, len(texts))]}),
                   data / "part-2.parquet")  # fmt: skip
    expected = {f"k{i}": t for i, t in enumerate(texts)}
    argv = ["run", "text-classification", "--model", str(models["classifier"]), "--ray", "--input",
            str(data / "part-*"), "-o", str(tmp_path / "labels"), "--text-column", "body", "--id-column", "key",
            "--num-actors", "2", "--rows-per-file", "3", "--top-k", "3", "--option", "truncation=true"]  # fmt: skip
    assert _within(JOB_TIMEOUT, cli.main, argv) == 0
    stdout = capsys.readouterr().out
    assert (
        "text-classification (torch) 12 texts" in stdout and "5 files written, 0 already complete" in stdout
    )
    _assert_classifications(
        _read(tmp_path / "labels", "result", "key"), expected, models["classifier"], "torch"
    )

    argv = ["embed", str(data), "-o", str(tmp_path / "emb"), "--model", str(models["st"]), "--backend", "torch",
            "--ray", "--text-column", "body", "--id-column", "key", "--normalize", "--num-actors", "2", "-q"]  # fmt: skip
    assert _within(JOB_TIMEOUT, cli.main, argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("embedded (torch) 12 texts") and "2 files written" in stdout
    _assert_embeddings(
        _read(tmp_path / "emb", "embedding", "key"), expected, models["st"], normalize_embeddings=True
    )
    assert _within(JOB_TIMEOUT, cli.main, argv) == 0  # rerun: nothing to do
    assert "embedded (torch) 0 texts" in capsys.readouterr().out


def test_an_error_in_a_worker_names_the_file_and_line(cluster, models, tmp_path):
    good = "\n".join(json.dumps({"text": t}) for t in TEXTS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.jsonl").write_text(good + '\n{"txt": "no text here"}\n', encoding="utf-8")
    with pytest.raises(ray_jobs.JobError, match=r"c\.jsonl:13: no text column 'text'"):
        _within(
            JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", tmp_path / "out", model=models["st"], num_actors=1
        )
    assert not list((tmp_path / "out").glob("*.parquet"))
    import psutil

    _, alive = psutil.wait_procs(_workers(), timeout=30)  # the failed job's actors are gone
    assert not alive, [p.pid for p in alive]
    (tmp_path / "data" / "c.jsonl").write_text(good + '\n{"text": 42}\n', encoding="utf-8")
    with pytest.raises(
        ray_jobs.JobError, match=r"c\.jsonl: row 12: text column 'text' holds int, not a string"
    ):
        _within(
            JOB_TIMEOUT, ray_jobs.embed, tmp_path / "data", tmp_path / "out", model=models["st"], num_actors=1
        )


# -- bad input, before any cluster -----------------------------------------------------------------
def test_bad_inputs_get_one_clear_error(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = tmp_path / "model"
    model.mkdir()
    pq.write_table(pa.table({"body": ["x"], "id": [1]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "c.csv").write_text("text\nx\n")
    (tmp_path / "d.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    cases = [
        ([tmp_path / "a.parquet"], {}, r"a\.parquet: no text column 'text' \(columns: 'body', 'id'\)"),
        (
            [tmp_path / "a.parquet"],
            {"text_column": "body", "id_column": "key"},
            r"a\.parquet: no id column 'key'",
        ),
        (
            [tmp_path / "b.jsonl"],
            {"text_column": "body"},
            r"b\.jsonl: no text column 'body' \(columns: 'text'\)",
        ),
        ([tmp_path / "bad.parquet"], {}, r"bad\.parquet: not a readable Parquet file"),
        ([tmp_path / "c.csv"], {}, r"c\.csv: unsupported file type '\.csv'"),
        ([tmp_path / "d.jsonl"], {}, r"d\.jsonl:1: expected a JSON object, got list"),
        ([tmp_path / "ints.parquet"], {}, r"ints\.parquet: text column 'text' holds int64, not strings"),
        ([str(tmp_path / "*.txt")], {}, r"no input files match .*\*\.txt"),
        ([tmp_path / "missing.parquet"], {}, r"no such input file: .*missing\.parquet"),
        ([tmp_path / "b.jsonl"], {"precision": "int8"}, r"precision 'int8' is not available in a Ray job"),
        ([tmp_path / "b.jsonl"], {"rows_per_file": 0}, "rows_per_file must be a positive integer"),
    ]
    for inputs, kwargs, pattern in cases:
        with pytest.raises(ray_jobs.JobError, match=pattern):
            ray_jobs.embed(inputs, tmp_path / "out", model=model, **kwargs)
    with pytest.raises(ray_jobs.JobError, match="inside the output directory"):
        ray_jobs.embed(tmp_path / "b.jsonl", tmp_path, model=model)
    with pytest.raises(ray_jobs.JobError, match="no such model directory"):
        ray_jobs.embed(tmp_path / "b.jsonl", tmp_path / "out", model=tmp_path / "nope")
    with pytest.raises(ray_jobs.JobError, match="needs exactly one of question= and question_column="):
        ray_jobs.run_task("question-answering", tmp_path / "b.jsonl", tmp_path / "out", model=model)
    with pytest.raises(KeyError, match="available tasks"):
        ray_jobs.run_task("summarization", tmp_path / "b.jsonl", tmp_path / "out", model=model)
    assert not (tmp_path / "out").exists()  # nothing written for a job refused


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(ImportError, match=r'pip install "xlmr\[ray\]"'):
        ray_jobs.embed(tmp_path / "b.jsonl", tmp_path / "out", model=model)
    code = cli_embed.main(
        [str(tmp_path / "b.jsonl"), "-o", str(tmp_path / "out2"), "--model", str(model), "--ray"]
    )
    assert code == 1


def test_ray_flags_need_ray(tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_text("a\n")
    code = cli_embed.main(
        [str(source), "-o", str(tmp_path / "x.npy"), "--model", str(tmp_path), "--num-actors", "2"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--num-actors only apply with --ray" in err and err.count("\n") == 1
    code = cli.main(["run", "fill-mask", "--model", str(tmp_path), "--text-column", "body", "x <mask>"])
    err = capsys.readouterr().err
    assert code == 2 and "--text-column only apply with --ray" in err
    code = cli.main(["run", "fill-mask", "--model", str(tmp_path), "--ray", "x <mask>"])
    assert code == 2 and "not TEXT arguments" in capsys.readouterr().err
    code = cli.main(["run", "fill-mask", "--model", str(tmp_path), "--ray", "--input", str(source)])
    assert code == 2 and "-o/--output" in capsys.readouterr().err
    code = cli_embed.main(["-o", str(tmp_path / "o"), "--model", str(tmp_path), "--ray"])
    assert code == 1 and "--ray reads Parquet/JSONL files" in capsys.readouterr().err


def test_import_xlmr_ray_jobs_needs_no_ray():
    code = (
        "import sys, xlmr.ray_jobs, xlmr.cli, xlmr.cli_embed\n"
        "bad = [m for m in ('ray', 'pyarrow', 'torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
