"""Tests of reading results directories and reshaping weight arrays."""

import json

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import synthetic_results, write_results_dir

from analysis import committed_parts, load_results, weights


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return synthetic_results(models=("linear",), ks=(1, 2), sparsities=[0.1, 0.5, 0.9], seeds=range(2), n_features=3)


def test_load_round_trip_skips_orphan_part(tmp_path, results):
    orphan = results.iloc[:2].assign(point_id=[1000, 1001])
    write_results_dir(results, tmp_path, n_parts=3, orphan=orphan)
    half_written = {"part": "part-99999.parquet", "point_ids": [1000, 1001]}
    (tmp_path / "_chunks" / ".chunk-99999.json").write_text(json.dumps(half_written))
    (tmp_path / "_analysis").mkdir()
    (tmp_path / "_analysis" / "fit_k_theta_deg.csv").write_text("not parquet\n")

    loaded = load_results(tmp_path)

    assert len(loaded) == len(results)
    assert loaded["point_id"].tolist() == results["point_id"].tolist()
    assert not loaded["point_id"].isin([1000, 1001]).any()
    assert loaded["k_theta_deg"].tolist() == results["k_theta_deg"].tolist()
    assert loaded["steps"].dtype == np.int32
    assert np.array_equal(loaded["W_h"].iloc[0], results["W_h"].iloc[0])
    assert [part.name for part in committed_parts(tmp_path)] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]


def test_load_without_chunks_reads_every_part(tmp_path, results):
    orphan = results.iloc[:2].assign(point_id=[1000, 1001])
    write_results_dir(results, tmp_path, n_parts=2, with_chunks=False, orphan=orphan)

    loaded = load_results(tmp_path)

    assert len(loaded) == len(results) + 2
    assert loaded["point_id"].isin([1000, 1001]).sum() == 2


def test_load_single_parquet_file(tmp_path, results):
    results.to_parquet(tmp_path / "one.parquet", index=False)

    loaded = load_results(tmp_path / "one.parquet")

    assert len(loaded) == len(results)


def test_load_tolerates_columns_added_later(tmp_path, results):
    write_results_dir(results, tmp_path, n_parts=1)
    newer = results.iloc[:2].assign(point_id=[500, 501], task_reward=[0.25, 0.5])
    newer.to_parquet(tmp_path / "part-00001.parquet", index=False)
    record = {"part": "part-00001.parquet", "point_ids": [500, 501]}
    (tmp_path / "_chunks" / "chunk-00001.json").write_text(json.dumps(record))

    loaded = load_results(tmp_path)

    assert len(loaded) == len(results) + 2
    assert loaded["task_reward"].notna().sum() == 2
    assert loaded.loc[loaded["point_id"] == 501, "task_reward"].item() == 0.5


def test_load_newer_schema_version_raises(tmp_path, results):
    write_results_dir(results, tmp_path, schema_version=2)

    with pytest.raises(ValueError) as error:
        load_results(tmp_path)

    message = str(error.value)
    assert "schema_version 2" in message
    assert "versions up to 1" in message
    assert "upgrade tsjax" in message


def test_load_current_schema_version_loads(tmp_path, results):
    write_results_dir(results, tmp_path, schema_version=1)

    assert len(load_results(tmp_path)) == len(results)


def test_load_missing_path_raises(tmp_path):
    missing = tmp_path / "no_such_sweep"

    with pytest.raises(FileNotFoundError) as error:
        load_results(missing)

    assert str(missing) in str(error.value)
    assert "\n" not in str(error.value)


def test_load_chunk_naming_missing_part_raises(tmp_path, results):
    write_results_dir(results, tmp_path, n_parts=2)
    (tmp_path / "part-00001.parquet").unlink()

    with pytest.raises(FileNotFoundError, match="names a missing part file"):
        load_results(tmp_path)


def test_load_directory_without_parts_is_empty(tmp_path):
    (tmp_path / "_manifest.json").write_text(json.dumps({"schema_version": 1, "sweep": "empty"}))

    assert load_results(tmp_path).empty


def test_weights_reshapes_arrays(results):
    row = results.iloc[3]

    arrays = weights(row)

    assert arrays["W_x"].shape == (2, 3)
    assert arrays["W_h"].shape == (2, 2)
    assert arrays["W_y"].shape == (2, 3)
    assert arrays["feature_directions"].shape == (6, 2, 3)
    assert arrays["projections"].shape == (6, 3, 3)
    # w_1 = W_h w_0 for the linear synthetic model, and a_s = W_y^T w_s.
    directions = arrays["feature_directions"]
    assert np.allclose(directions[1], arrays["W_h"] @ directions[0], atol=1e-5)
    assert np.allclose(arrays["projections"][2], arrays["W_y"].T @ directions[2], atol=1e-5)


def test_weights_rejects_wrong_size(results):
    row = results.iloc[0].copy()
    row["W_h"] = np.zeros(3, dtype=np.float32)

    with pytest.raises(ValueError, match="column W_h has 3 values"):
        weights(row)


def test_weights_skips_missing_arrays(results):
    row = results.iloc[0].drop(["projections"])
    row["W_x"] = None

    arrays = weights(row)

    assert set(arrays) == {"W_h", "W_y", "feature_directions"}


def test_load_chunk_record_directory_raises(tmp_path, results):
    write_results_dir(results, tmp_path, n_parts=1)
    (tmp_path / "_chunks" / "b.json").mkdir()

    with pytest.raises(ValueError) as error:
        load_results(tmp_path)

    message = str(error.value)
    assert f"chunk record {tmp_path / '_chunks' / 'b.json'} is not a file" in message
    assert "\n" not in message


def test_load_non_utf8_manifest_names_file(tmp_path, results):
    write_results_dir(results, tmp_path, n_parts=1)
    (tmp_path / "_manifest.json").write_bytes(b'{"schema_version": 1, "sweep": "\xff"}')

    with pytest.raises(ValueError) as error:
        load_results(tmp_path)

    message = str(error.value)
    assert f"manifest {tmp_path / '_manifest.json'} is not UTF-8 text" in message
    assert "\n" not in message
