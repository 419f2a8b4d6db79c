"""The results directory: part files, chunk records, the manifest, and resuming.

Layout of a results directory:

    part-g000-p00000000.parquet   one file per trained chunk (the data)
    _manifest.json                provenance, config, schema version and chunk sizes
    _chunks/part-....json         one record per finished part: its point ids
    _analysis/                    fit tables and figures

pyarrow skips names that start with `_` or `.`, so `pandas.read_parquet(DIR)` reads
only the part files. A part is written under a hidden temporary name, synced and
renamed, and only then recorded, so a process killed at any moment leaves only whole
parts. A part that was renamed but not yet recorded (an orphan) is complete, and the
next run records it instead of training its points again.

One sweep at a time may write a directory: `prepare` takes an exclusive `flock` on the
directory, which the kernel releases when the process exits, even on SIGKILL.
"""

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tsjax.config import SweepConfig
from tsjax.provenance import collect_provenance
from tsjax.results import SCHEMA, SCHEMA_VERSION

MANIFEST = "_manifest.json"
CHUNKS = "_chunks"
ANALYSIS = "_analysis"
# Names of what tsjax writes at the top of a results directory. `--overwrite` deletes
# only these, so a user's `part-notes.txt` or `_analysis.bak` survives. Group indices
# and point ids are zero-padded to at least 3 and 9 digits (see `write_chunk`).
_PART_STEM = r"part-g[0-9]{3,}-p[0-9]{9,}"
PART_NAME = re.compile(rf"{_PART_STEM}\.parquet")
# Temporary files of interrupted writes: a part (`write_chunk`) and the manifest at the
# top, and chunk records in `_chunks/` (`write_atomic` prefixes `.tmp-`).
TEMPORARY_FILES = re.compile(rf"\.part-{_PART_STEM}\.parquet|\.tmp-_manifest\.json"
                             rf"|\.tmp-{_PART_STEM}\.json")
OWNED_FILES = re.compile(rf"{_PART_STEM}\.parquet|_manifest\.json"
                         rf"|\.part-{_PART_STEM}\.parquet|\.tmp-_manifest\.json")
OWNED_DIRECTORIES = (CHUNKS, ANALYSIS)


class ResultsDirError(RuntimeError):
    """The results directory cannot be used or written. The message is one line."""


def config_fingerprint(config: SweepConfig) -> str:
    """Hash the sweep name and grid axes, so edits to comments do not block a resume."""
    canonical = json.dumps({"name": config.name, "axes": {k: list(v) for k, v in
                                                         config.axes.items()}},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file and a rename.

    On failure the temporary file is removed and `path` keeps its old content.
    """
    temporary = path.with_name(f".tmp-{path.name}")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _sync_directory(path.parent)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: Path) -> None:
    """Delete `path` if it exists; a failure here must not hide the error being handled."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _make_directories(path: Path) -> list[Path]:
    """Create `path` and its missing parents; return the created ones, outermost first."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    missing.reverse()
    made = []
    try:
        for directory in missing:
            directory.mkdir(exist_ok=True)
            made.append(directory)
    except OSError:
        for directory in reversed(made):
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    return made


def _describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)


def is_owned_entry(entry: Path) -> bool:
    """Return whether `entry`, at the top of a results directory, is one tsjax writes."""
    if entry.is_symlink():
        return False
    if entry.name in OWNED_DIRECTORIES:
        return entry.is_dir()
    return OWNED_FILES.fullmatch(entry.name) is not None and entry.is_file()


class ResultsDir:
    """A results directory that one sweep config owns.

    Use it as a context manager, or call `close`, to release the directory lock that
    `prepare` takes.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.manifest: dict | None = None
        self._lock_descriptor: int | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict | None:
        """Return the manifest, or None when the directory has none."""
        if not self.manifest_path.is_file():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ResultsDirError(f"{self.manifest_path}: unreadable manifest ({error}); "
                                  "pass --overwrite to start the sweep again") from None
        if not isinstance(manifest, dict):
            raise ResultsDirError(f"{self.manifest_path}: manifest is not a JSON object; "
                                  "pass --overwrite to start the sweep again")
        return manifest

    def prepare(self, config: SweepConfig, overwrite: bool = False,
                run_settings: dict | None = None) -> np.ndarray:
        """Make the directory ready for `config` and return the ids of finished points.

        An existing directory of the same config and schema resumes. A directory that
        contains results of another config or schema is rejected unless `overwrite`, which
        deletes only tsjax's own files. A directory with other files and no manifest is
        always rejected, so tsjax never mixes its parts with files it did not write.
        `run_settings` go into a new manifest, and the `manifest` attribute is the one
        in force.
        Raises `ResultsDirError`.
        """
        created = []
        try:
            if self.path.exists() and not self.path.is_dir():
                raise ResultsDirError(f"{self.path}: output path exists and is not a directory")
            # Check once before creating anything, so a rejected directory stays
            # untouched, and again under the lock, in case another sweep changed it.
            if self.path.is_dir():
                self._check_ownership(config, overwrite)
            created = _make_directories(self.path)
            self._lock()
            self.manifest = self._open_manifest(config, overwrite, run_settings)
            created = []
            (self.path / CHUNKS).mkdir(exist_ok=True)
            self._remove_temporary_files()
            self._drop_records_of_missing_parts()
            self._adopt_orphan_parts()
            self._check_part_schema()
            return self.finished_point_ids(config.grid_size)
        except OSError as error:
            self._abandon(created)
            raise ResultsDirError(f"{self.path}: cannot write results "
                                  f"({_describe_os_error(error)})") from None
        except BaseException:
            self._abandon(created)
            raise

    def attach(self, config: SweepConfig) -> np.ndarray:
        """Open a directory that another process of the same run prepared, without
        locking or cleaning it, and return the ids of finished points.

        In a multi-process run, one process calls `prepare` and the others call `attach`
        only after it returns, because `prepare` deletes temporary files that a writer
        in another process may still need. Raises `ResultsDirError`.
        """
        if not self.manifest_path.is_file():
            raise ResultsDirError(f"{self.path}: manifest not found; call prepare in one "
                                  "process before the others attach")
        self.manifest = self._check_ownership(config, overwrite=False)
        return self.finished_point_ids(config.grid_size)

    def _abandon(self, created: list[Path]) -> None:
        """Release the lock and remove the directories this call created, if still empty."""
        self.close()
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break

    def _open_manifest(self, config: SweepConfig, overwrite: bool,
                       run_settings: dict | None) -> dict:
        """Return the manifest to resume, or write a new one after clearing old files."""
        manifest = self._check_ownership(config, overwrite)
        if manifest is not None:
            return manifest
        self._delete_owned_files()
        manifest = {"sweep": config.name, "schema_version": SCHEMA_VERSION,
                    "config_fingerprint": config_fingerprint(config),
                    "grid_size": config.grid_size, **(run_settings or {}),
                    "config_text": config.text, "config_source": config.source,
                    "provenance": collect_provenance()}
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2).encode())
        return manifest

    def update_manifest(self, **fields) -> None:
        """Replace fields of the manifest, atomically."""
        self.manifest = {**self.manifest, **fields}
        write_atomic(self.manifest_path, json.dumps(self.manifest, indent=2).encode())

    def close(self) -> None:
        """Release the directory lock, if held."""
        if self._lock_descriptor is not None:
            os.close(self._lock_descriptor)
            self._lock_descriptor = None

    def _lock(self) -> None:
        if self._lock_descriptor is not None:
            return
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ResultsDirError(f"{self.path}: another tsjax sweep is writing this "
                                      "directory; wait for it to finish or choose another "
                                      "--out") from None
            raise
        self._lock_descriptor = descriptor

    def _check_ownership(self, config: SweepConfig, overwrite: bool) -> dict | None:
        """Raise unless `config` may write here; return the manifest to resume, if any."""
        entries = sorted(self.path.iterdir())
        foreign = [entry.name for entry in entries if not is_owned_entry(entry)]
        manifest_present = self.manifest_path.is_file()
        if not manifest_present and foreign:
            raise ResultsDirError(
                f"{self.path}: directory is not empty and has no tsjax manifest "
                f"(found {', '.join(foreign[:3])}); choose another --out")
        if not manifest_present:
            if any(PART_NAME.fullmatch(entry.name) for entry in entries) and not overwrite:
                raise ResultsDirError(f"{self.path}: directory has part files but no "
                                      "manifest; pass --overwrite to start the sweep again")
            return None
        if overwrite:
            return None

        manifest = self.read_manifest()
        if manifest.get("config_fingerprint") != config_fingerprint(config):
            raise ResultsDirError(
                f"{self.path}: contains results of a different config "
                f"(sweep {manifest.get('sweep')!r}); choose another --out or pass --overwrite")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ResultsDirError(
                f"{self.path}: contains results of schema version "
                f"{manifest.get('schema_version')!r}, but this tsjax writes version "
                f"{SCHEMA_VERSION}; choose another --out or pass --overwrite")
        return manifest

    def _check_part_schema(self) -> None:
        """Reject a resume whose existing parts have other columns than this tsjax writes."""
        records = self.chunk_records()
        if not records:
            return
        part = self.path / records[0]["part"]
        try:
            schema = pq.read_schema(part)
        except (OSError, pa.ArrowException) as error:
            raise ResultsDirError(f"{part}: unreadable part file ({error}); "
                                  "pass --overwrite to start the sweep again") from None
        if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
            raise ResultsDirError(
                f"{self.path}: its parts have other columns than this tsjax writes, so "
                "resuming would mix two schemas; choose another --out or pass --overwrite")

    def finished_point_ids(self, grid_size: int | None = None) -> np.ndarray:
        """Return the ids of recorded points; raise if a point is recorded twice."""
        ids = [np.asarray(record["point_ids"], dtype=np.int64) for record in self.chunk_records()]
        finished = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        if len(np.unique(finished)) != len(finished):
            raise ResultsDirError(f"{self.path / CHUNKS}: a grid point is recorded twice; "
                                  "pass --overwrite to start the sweep again")
        if grid_size is not None and len(finished) and (finished.min() < 0
                                                        or finished.max() >= grid_size):
            raise ResultsDirError(f"{self.path / CHUNKS}: records point ids outside the grid "
                                  f"of {grid_size} points; pass --overwrite to start again")
        return finished

    def chunk_records(self) -> list[dict]:
        """Read every chunk record, sorted by part name."""
        return [record for _, record in self._record_files()]

    def _record_files(self):
        """Yield (path, record) for every chunk record, sorted by name."""
        for path in sorted((self.path / CHUNKS).glob("part-*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ResultsDirError(f"{path}: unreadable chunk record ({error}); "
                                      "pass --overwrite to start the sweep again") from None
            if (not isinstance(record, dict) or not isinstance(record.get("part"), str)
                    or not isinstance(record.get("point_ids"), list)):
                raise ResultsDirError(f"{path}: invalid chunk record; "
                                      "pass --overwrite to start the sweep again")
            yield path, record

    def write_chunk(self, table: pa.Table, group_index: int) -> Path:
        """Write one chunk's rows as a part file, then record it as finished.

        Raises `ResultsDirError` when the part or its record cannot be written, after
        deleting both, so the directory keeps only the chunks recorded before.
        """
        point_ids = table.column("point_id").to_numpy()
        name = f"part-g{group_index:03d}-p{int(point_ids[0]):09d}.parquet"
        part = self.path / name
        temporary = self.path / f".part-{name}"
        try:
            with open(temporary, "wb") as file:
                pq.write_table(table, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, part)
        except OSError as error:
            _remove_quietly(temporary)
            raise ResultsDirError(f"{part}: cannot write part file "
                                  f"({_describe_os_error(error)})") from None
        except BaseException:
            _remove_quietly(temporary)
            raise
        try:
            _sync_directory(self.path)
            self._record(name, point_ids)
        except OSError as error:
            _remove_quietly(part)
            raise ResultsDirError(f"{self.path / CHUNKS}: cannot record part {name} "
                                  f"({_describe_os_error(error)})") from None
        return part

    def _record(self, name: str, point_ids: np.ndarray) -> None:
        record = {"part": name, "point_ids": [int(i) for i in point_ids]}
        write_atomic(self.path / CHUNKS / name.replace(".parquet", ".json"),
                     json.dumps(record).encode())

    def _drop_records_of_missing_parts(self) -> None:
        """Forget records whose part file is gone, so their points are trained again."""
        for path, record in self._record_files():
            if not (self.path / record["part"]).is_file():
                path.unlink()

    def _adopt_orphan_parts(self) -> None:
        """Record parts that were renamed into place but not recorded before a crash.

        An orphan that cannot be read, has another schema, or repeats recorded points is
        deleted instead, and its points are trained again.
        """
        records = self.chunk_records()
        recorded_parts = {record["part"] for record in records}
        recorded_ids = set(self.finished_point_ids().tolist())
        for part in sorted(self.path.glob("part-*.parquet")):
            if part.name in recorded_parts or not is_owned_entry(part):
                continue
            try:
                schema = pq.read_schema(part)
                point_ids = pq.read_table(part, columns=["point_id"]).column("point_id")
            except (OSError, pa.ArrowException):
                part.unlink()
                continue
            point_ids = point_ids.to_numpy()
            if (not schema.remove_metadata().equals(SCHEMA.remove_metadata())
                    or recorded_ids.intersection(point_ids.tolist())):
                part.unlink()
                continue
            self._record(part.name, point_ids)
            recorded_ids.update(point_ids.tolist())

    def _remove_temporary_files(self) -> None:
        for directory in (self.path, self.path / CHUNKS):
            for entry in directory.iterdir():
                if (TEMPORARY_FILES.fullmatch(entry.name) and entry.is_file()
                        and not entry.is_symlink()):
                    entry.unlink()

    def _delete_owned_files(self) -> None:
        """Delete what tsjax wrote (see `is_owned_entry`), the manifest first, so a crash
        midway leaves no manifest that vouches for a half-deleted dataset. Other entries
        stay, whatever their names."""
        self.manifest_path.unlink(missing_ok=True)
        for entry in sorted(self.path.iterdir()):
            if not is_owned_entry(entry):
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
