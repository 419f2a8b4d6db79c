"""Schema versions: recorded in every dataset, checked by the loader and on resume."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis.loader import CURRENT_SCHEMA_VERSION, load_results
from config_text import toml_text, valid_config
from tsjax.config import parse_config
from tsjax.dataset import ResultsDirError
from tsjax.grid import expand_grid
from tsjax.results import SCHEMA, SCHEMA_VERSION, chunk_rows
from tsjax.sweep import run_sweep
from tsjax.training import train_chunk

SEVEN = {**valid_config(k=1, sparsity=0.5, seed=list(range(7))), "name": "seven"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "seven"
    run_sweep(parse_config(toml_text(SEVEN)), out, chunk_size=3, progress=False)
    return out


@pytest.fixture
def dataset_copy(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "copy")


def set_manifest_version(out, version):
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["schema_version"] = version
    (out / "_manifest.json").write_text(json.dumps(manifest))


def test_manifest_records_version(dataset):
    manifest = json.loads((dataset / "_manifest.json").read_text())

    assert manifest["schema_version"] == SCHEMA_VERSION


def test_parts_record_version(dataset):
    parts = sorted(dataset.glob("part-*.parquet"))

    assert len(parts) == 3
    for part in parts:
        metadata = pq.read_schema(part).metadata
        assert metadata[b"tsjax_schema_version"] == str(SCHEMA_VERSION).encode()


def test_loader_knows_engine_version():
    assert CURRENT_SCHEMA_VERSION == SCHEMA_VERSION


def test_loader_reads_current_version(dataset):
    frame = load_results(dataset)

    assert sorted(frame.point_id) == list(range(7))


def test_loader_rejects_newer_version(dataset_copy):
    set_manifest_version(dataset_copy, SCHEMA_VERSION + 1)

    with pytest.raises(ValueError, match=f"schema_version {SCHEMA_VERSION + 1}.*upgrade"):
        load_results(dataset_copy)


def test_resume_rejects_other_version(dataset_copy):
    set_manifest_version(dataset_copy, SCHEMA_VERSION + 1)

    with pytest.raises(ResultsDirError, match=f"schema version {SCHEMA_VERSION + 1}"):
        run_sweep(parse_config(toml_text(SEVEN)), dataset_copy, chunk_size=3, progress=False)


def test_resume_rejects_other_columns(dataset_copy):
    part = sorted(dataset_copy.glob("part-*.parquet"))[0]
    pq.write_table(pq.read_table(part).drop_columns(["projections"]), part)

    with pytest.raises(ResultsDirError, match="other columns"):
        run_sweep(parse_config(toml_text(SEVEN)), dataset_copy, chunk_size=3, progress=False)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_written_with_schema_types(dtype):
    group = expand_grid(parse_config(toml_text(SEVEN)))[0].select(np.arange(3))
    result = train_chunk(group.grid_points(), group.spec)
    low = jax.tree.map(
        lambda leaf: leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf,
        result)

    table = chunk_rows("seven", group, low)

    assert table.schema.equals(SCHEMA, check_metadata=True)
    np.testing.assert_allclose(table.column("eval_loss").to_numpy(),
                               np.asarray(result.eval_loss, dtype=np.float64), rtol=1e-2)
