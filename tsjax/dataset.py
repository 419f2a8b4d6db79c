"""The results directory: part files, chunk records, the manifest, and resuming.

Layout of a results directory:

    part-g000-p00000000.parquet   one file per trained chunk (the data)
    _manifest.json                provenance, config and schema version
    _chunks/part-....json         one record per finished part: its point ids
    _analysis/                    fit tables and figures

pyarrow skips names that start with `_` or `.`, so `pandas.read_parquet(DIR)` reads
only the part files. A part is written under a hidden temporary name, synced and
renamed, and only then recorded, so a crash leaves either a whole part or none.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tsjax.config import SweepConfig
from tsjax.provenance import collect_provenance
from tsjax.results import SCHEMA_VERSION

MANIFEST = "_manifest.json"
CHUNKS = "_chunks"
OWNED_PREFIXES = ("part-", "_manifest", "_chunks", "_analysis", ".part-", ".tmp-")


class ResultsDirError(RuntimeError):
    """The results directory cannot be used as requested. The message is one line."""


def config_fingerprint(config: SweepConfig) -> str:
    """Hash the sweep name and grid axes, so edits to comments do not block a resume."""
    canonical = json.dumps({"name": config.name, "axes": {k: list(v) for k, v in
                                                         config.axes.items()}},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file and a rename."""
    temporary = path.with_name(f".tmp-{path.name}")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _sync_directory(path.parent)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ResultsDir:
    """A results directory that one sweep config owns."""

    def __init__(self, path):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsDirError(f"{self.manifest_path}: unreadable manifest ({error}); "
                                  "pass --overwrite to start the sweep again") from None

    def prepare(self, config: SweepConfig, overwrite: bool = False) -> np.ndarray:
        """Make the directory ready for `config` and return the ids of finished points.

        An existing directory of the same config resumes. A directory that holds other
        results is rejected unless `overwrite`, which deletes only tsjax's own files.
        """
        fingerprint = config_fingerprint(config)
        manifest = self.read_manifest() if self.path.exists() else None
        if self.path.exists() and not self.path.is_dir():
            raise ResultsDirError(f"{self.path}: output path exists and is not a directory")

        if overwrite and self.path.exists():
            self._delete_owned_files()
            manifest = None
        elif manifest is not None and manifest.get("config_fingerprint") != fingerprint:
            raise ResultsDirError(
                f"{self.path}: holds results of a different config "
                f"(sweep '{manifest.get('sweep')}'); choose another --out or pass --overwrite")
        elif manifest is None and self.path.exists() and any(self.path.iterdir()):
            foreign = sorted(entry.name for entry in self.path.iterdir())[:3]
            raise ResultsDirError(
                f"{self.path}: directory is not empty and has no tsjax manifest "
                f"(found {', '.join(foreign)}); choose another --out or pass --overwrite")

        try:
            (self.path / CHUNKS).mkdir(parents=True, exist_ok=True)
            if manifest is None:
                manifest = {"sweep": config.name, "schema_version": SCHEMA_VERSION,
                            "config_fingerprint": fingerprint, "grid_size": config.grid_size,
                            "config_text": config.text, "config_source": config.source,
                            "provenance": collect_provenance()}
                write_atomic(self.manifest_path, json.dumps(manifest, indent=2).encode())
            self._remove_temporary_files()
            self._adopt_orphan_parts()
        except OSError as error:
            raise ResultsDirError(f"{self.path}: cannot write results ({error.strerror})") from None
        return self.finished_point_ids()

    def finished_point_ids(self) -> np.ndarray:
        ids = [np.asarray(record["point_ids"], dtype=np.int64) for record in self.chunk_records()]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def chunk_records(self) -> list[dict]:
        records = []
        for path in sorted((self.path / CHUNKS).glob("part-*.json")):
            records.append(json.loads(path.read_text()))
        return records

    def write_chunk(self, table: pa.Table, group_index: int) -> Path:
        """Write one chunk's rows as a part file, then record it as finished."""
        point_ids = table.column("point_id").to_numpy()
        name = f"part-g{group_index:03d}-p{int(point_ids[0]):09d}.parquet"
        part = self.path / name
        temporary = self.path / f".part-{name}"
        with open(temporary, "wb") as file:
            pq.write_table(table, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, part)
        _sync_directory(self.path)
        self._record(name, point_ids)
        return part

    def _record(self, name: str, point_ids: np.ndarray) -> None:
        record = {"part": name, "point_ids": [int(i) for i in point_ids]}
        write_atomic(self.path / CHUNKS / name.replace(".parquet", ".json"),
                     json.dumps(record).encode())

    def _adopt_orphan_parts(self) -> None:
        """Record parts that were renamed into place but not recorded before a crash."""
        recorded = {record["part"] for record in self.chunk_records()}
        for part in sorted(self.path.glob("part-*.parquet")):
            if part.name in recorded:
                continue
            try:
                point_ids = pq.read_table(part, columns=["point_id"]).column("point_id")
            except (OSError, pa.ArrowException):
                part.unlink()
                continue
            self._record(part.name, point_ids.to_numpy())

    def _remove_temporary_files(self) -> None:
        for pattern in (".part-*", ".tmp-*", f"{CHUNKS}/.tmp-*"):
            for path in self.path.glob(pattern):
                path.unlink(missing_ok=True)

    def _delete_owned_files(self) -> None:
        for entry in self.path.iterdir():
            if not entry.name.startswith(OWNED_PREFIXES):
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
