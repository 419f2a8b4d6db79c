"""Results directories under stop signals, foreign contents and failing writes.

Every case runs the real sweep in this process; a failure is injected by patching one
write. Each must end in a one-line message, leave no half-written file, and let the same
command resume to rows equal to an uninterrupted run.
"""

import errno
import json
import os
import signal

import jax
import pandas as pd
import pyarrow.parquet as pq
import pytest

import tsjax.dataset
import tsjax.sweep
from config_text import toml_text, valid_config
from frames import differing_columns, sorted_rows
from tsjax.cli import main
from tsjax.config import parse_config
from tsjax.dataset import ResultsDir, ResultsDirError
from tsjax.sweep import run_sweep

# Seven models in chunks of 3: two full chunks and a last one padded from 1 to 3 points.
SEVEN = {**valid_config(k=1, sparsity=0.5, seed=list(range(7))), "name": "seven"}
THREE = {**valid_config(k=1, sparsity=0.5, seed=list(range(3))), "name": "three"}
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "seven"
    run_sweep(parse_config(toml_text(SEVEN)), out, chunk_size=3, progress=False)
    return sorted_rows(pd.read_parquet(out))


def write_config(directory, document=SEVEN):
    path = directory / f"{document['name']}.toml"
    path.write_text(toml_text(document))
    return path


def sweep(config, out, *options):
    return main(["sweep", str(config), "--out", str(out), "--chunk-size", "3",
                 "--no-progress", *options])


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("tsjax: error: "), error
    assert len(error.strip().splitlines()) == 1, error
    return error


def hidden_files(out):
    directories = [out, out / "_chunks"] if (out / "_chunks").is_dir() else [out]
    return [path.name for directory in directories for path in directory.iterdir()
            if path.name.startswith(".")]


def check_matches_reference(out, reference):
    frame = sorted_rows(pd.read_parquet(out))
    assert list(frame.point_id) == list(range(7))
    assert differing_columns(frame, reference) == []


def test_same_config_gives_identical_rows(reference, tmp_path):
    run_sweep(parse_config(toml_text(SEVEN)), tmp_path / "again", chunk_size=3, progress=False)

    frame = sorted_rows(pd.read_parquet(tmp_path / "again"))
    assert differing_columns(frame, reference) == []
    for field in pq.read_schema(next((tmp_path / "again").glob("part-*.parquet"))):
        assert "timestamp" not in str(field.type), field.name


def test_sigterm_stops_then_resume_matches(reference, tmp_path, monkeypatch, capfd):
    # capfd, because the signal handler writes to file descriptor 2 directly.
    config, out = write_config(tmp_path), tmp_path / "out"
    real_write_chunk = ResultsDir.write_chunk
    writes = []

    def write_then_signal(self, table, group_index):
        part = real_write_chunk(self, table, group_index)
        writes.append(part)
        if len(writes) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return part

    monkeypatch.setattr(ResultsDir, "write_chunk", write_then_signal)
    code = sweep(config, out)
    error = capfd.readouterr().err
    monkeypatch.undo()

    assert code == 128 + signal.SIGTERM
    assert "SIGTERM received" in error
    assert f"interrupted: 6 of 7 models are saved in {out}" in error
    assert f"tsjax sweep {config} --out {out} --chunk-size 3" in error
    assert len(pd.read_parquet(out)) == 6

    assert sweep(config, out) == 0
    assert "trained 1 models" in capfd.readouterr().out
    # The last point trains alone but padded to the recorded size 3, as it would have
    # in the uninterrupted run, so its row is equal bit for bit.
    assert json.loads((out / "_manifest.json").read_text())["chunk_sizes"] == [3]
    check_matches_reference(out, reference)


def test_foreign_config_rejected_then_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(write_config(tmp_path, THREE), out) == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    capsys.readouterr()

    code = sweep(write_config(tmp_path, SEVEN), out)

    error = one_line_error(capsys)
    assert code == 2
    assert "contains results of a different config (sweep 'three')" in error
    assert "--overwrite" in error
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before

    assert sweep(write_config(tmp_path, SEVEN), out, "--overwrite") == 0
    frame = pd.read_parquet(out)
    assert set(frame.sweep) == {"seven"}
    assert sorted(frame.point_id) == list(range(7))


def test_directory_without_manifest_rejected(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    for options in [(), ("--overwrite",)]:
        code = sweep(write_config(tmp_path), out, *options)

        error = one_line_error(capsys)
        assert code == 2
        assert "has no tsjax manifest (found notes.txt)" in error
        assert [path.name for path in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("layout", ["inside a file", "is a file"])
def test_unusable_out_path_rejected(tmp_path, capsys, layout):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker / "out" if layout == "inside a file" else blocker

    code = sweep(write_config(tmp_path), out)

    error = one_line_error(capsys)
    assert code == 2
    assert str(out) in error
    assert "Not a directory" in error or "not a directory" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocker", "seven.toml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_parent_rejected(tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)

    code = sweep(write_config(tmp_path), parent / "out")

    assert code == 2
    assert "Permission denied" in one_line_error(capsys)
    assert list(parent.iterdir()) == []


def test_disk_full_in_part_then_resume(reference, tmp_path, monkeypatch, capsys):
    config, out = write_config(tmp_path), tmp_path / "out"
    real_write_table = pq.write_table
    calls = []

    def write_table_until_full(table, where, **options):
        calls.append(where)
        if len(calls) == 2:
            where.write(b"PAR1 partial")
            raise DISK_FULL
        real_write_table(table, where, **options)

    monkeypatch.setattr(pq, "write_table", write_table_until_full)
    code = sweep(config, out)
    error = one_line_error(capsys)
    monkeypatch.undo()

    assert code == 2
    assert "No space left on device" in error
    assert "3 of 7 models are saved" in error
    assert "run the same command to resume" in error
    assert hidden_files(out) == []
    assert len(pd.read_parquet(out)) == 3

    assert sweep(config, out) == 0
    check_matches_reference(out, reference)


def test_disk_full_in_record_keeps_no_orphan(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_write_atomic = tsjax.dataset.write_atomic

    def write_atomic_until_full(path, data):
        if path.parent.name == "_chunks" and len(list(path.parent.iterdir())) == 1:
            raise DISK_FULL
        real_write_atomic(path, data)

    monkeypatch.setattr(tsjax.dataset, "write_atomic", write_atomic_until_full)
    code = sweep(write_config(tmp_path), out)
    error = one_line_error(capsys)

    assert code == 2
    assert "cannot record part" in error
    assert "No space left on device" in error
    assert hidden_files(out) == []
    assert len(list(out.glob("part-*.parquet"))) == 1
    assert len(pd.read_parquet(out)) == 3


def test_disk_full_in_manifest_creates_nothing(tmp_path, monkeypatch, capsys):
    def always_full(path, data):
        raise DISK_FULL

    monkeypatch.setattr(tsjax.dataset, "write_atomic", always_full)
    code = sweep(write_config(tmp_path), tmp_path / "a" / "b" / "out")

    error = one_line_error(capsys)
    assert code == 2
    assert "cannot write results (No space left on device)" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seven.toml"]


def test_training_failure_is_one_line(tmp_path, monkeypatch, capsys):
    def out_of_memory(points, spec):
        raise jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB\ndetails")

    monkeypatch.setattr(tsjax.sweep, "train_chunk", out_of_memory)
    code = sweep(write_config(tmp_path), tmp_path / "out")

    error = one_line_error(capsys)
    assert code == 2
    assert "RESOURCE_EXHAUSTED: Out of memory" in error
    assert "0 of 7 models are saved" in error
    assert "--chunk-size" in error


def test_second_writer_rejected(tmp_path):
    config = parse_config(toml_text(SEVEN))
    first, second = ResultsDir(tmp_path / "out"), ResultsDir(tmp_path / "out")
    first.prepare(config)

    with pytest.raises(ResultsDirError, match="another tsjax sweep is writing"):
        second.prepare(config)
    first.close()
    assert len(second.prepare(config)) == 0
    second.close()


def test_attach_reads_prepared_directory(tmp_path):
    config = parse_config(toml_text(SEVEN))
    worker = ResultsDir(tmp_path / "out")

    with pytest.raises(ResultsDirError, match="manifest not found"):
        worker.attach(config)
    with ResultsDir(tmp_path / "out") as leader:
        leader.prepare(config)
        assert len(worker.attach(config)) == 0
        with pytest.raises(ResultsDirError, match="different config"):
            worker.attach(parse_config(toml_text(THREE)))


def test_missing_part_is_trained_again(reference, tmp_path, capsys):
    config, out = write_config(tmp_path), tmp_path / "out"
    assert sweep(config, out) == 0
    sorted(out.glob("part-*.parquet"))[1].unlink()
    capsys.readouterr()

    assert sweep(config, out) == 0
    assert "trained 3 models" in capsys.readouterr().out
    check_matches_reference(out, reference)


def test_crash_before_manifest_starts_fresh(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "_chunks").mkdir(parents=True)
    (out / ".tmp-_manifest.json").write_text('{"sweep": ')

    assert sweep(write_config(tmp_path), out) == 0
    assert "trained 7 models" in capsys.readouterr().out
    assert hidden_files(out) == []


def test_overwrite_keeps_lookalike_entries(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(write_config(tmp_path, THREE), out) == 0
    (out / "_analysis").mkdir()
    (out / "_analysis" / "fit_k_theta_deg.csv").write_text("old fit")
    lookalikes = ["part-notes.txt", "part-g000-p000000000.parquet.bak", "_manifest.json.orig",
                  "_analysis.bak", ".tmp-mine", ".part-mine"]
    for name in lookalikes:
        (out / name).write_text("mine")
    for name in ["_chunks_backup", "part-dir"]:
        (out / name).mkdir()
        (out / name / "keep.txt").write_text("mine")

    assert sweep(write_config(tmp_path, SEVEN), out, "--overwrite") == 0

    for name in lookalikes:
        assert (out / name).read_text() == "mine", name
    for name in ["_chunks_backup", "part-dir"]:
        assert (out / name / "keep.txt").read_text() == "mine", name
    assert not (out / "_analysis").exists()
    assert len(list((out / "_chunks").iterdir())) == 3
    assert sorted(pd.read_parquet(out / "part-g000-p000000000.parquet").point_id) == [0, 1, 2]


def test_lookalike_part_without_manifest_rejected(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-notes.txt").write_text("mine")

    code = sweep(write_config(tmp_path), out, "--overwrite")

    assert code == 2
    assert "has no tsjax manifest (found part-notes.txt)" in one_line_error(capsys)
    assert [path.name for path in out.iterdir()] == ["part-notes.txt"]


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5, True, "3"])
def test_run_sweep_rejects_bad_chunk_size(tmp_path, chunk_size):
    with pytest.raises(ValueError) as raised:
        run_sweep(parse_config(toml_text(SEVEN)), tmp_path / "out", chunk_size=chunk_size,
                  progress=False)

    message = str(raised.value)
    assert f"invalid chunk_size={chunk_size!r}" in message
    assert "expected an integer >= 1 or None" in message
    assert not (tmp_path / "out").exists()


def test_run_sweep_rejects_empty_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValueError, match="invalid out=''"):
        run_sweep(parse_config(toml_text(SEVEN)), "", progress=False)
    assert list(tmp_path.iterdir()) == []
