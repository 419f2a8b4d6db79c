"""Run `tsjax sweep` and SIGKILL the process at a chosen point of its writes.

Usage: python sweep_with_faults.py FAULT N SWEEP_ARGUMENTS...

FAULT is one of these, and N counts parts or records written by this process:

- kill-in-manifest-write: write half of the new manifest's temporary file, then die.
- kill-in-part-write: on the Nth part, write half of its Parquet bytes, then die.
- kill-before-record: on the Nth part, die after its rename and before its record.
- kill-in-record-write: on the Nth record, write half of its temporary file, then die.
- kill-after-records: die right after the Nth chunk record is written.

The process kills itself with SIGKILL, so no handler, `finally` or buffer flush runs:
what is on disk is exactly what a crash at that point leaves.
"""

import io
import os
import signal
import sys

import pyarrow.parquet as pq

import tsjax.dataset
from tsjax.cli import main

FAULTS = ("kill-in-manifest-write", "kill-in-part-write", "kill-before-record",
          "kill-in-record-write", "kill-after-records")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def write_half_then_die(path, data: bytes):
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        os.fsync(file.fileno())
    die()


def install(fault: str, n: int) -> None:
    counts = {"part": 0, "record": 0}
    real_write_table = pq.write_table
    real_write_atomic = tsjax.dataset.write_atomic
    real_record = tsjax.dataset.ResultsDir._record

    def write_table(table, where, **options):
        counts["part"] += 1
        if fault == "kill-in-part-write" and counts["part"] == n:
            buffer = io.BytesIO()
            real_write_table(table, buffer, **options)
            where.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            where.flush()
            os.fsync(where.fileno())
            die()
        real_write_table(table, where, **options)

    def write_atomic(path, data):
        is_record = path.parent.name == tsjax.dataset.CHUNKS
        if is_record:
            counts["record"] += 1
        if fault == "kill-in-manifest-write" and path.name == tsjax.dataset.MANIFEST:
            write_half_then_die(path.with_name(f".tmp-{path.name}"), data)
        if fault == "kill-in-record-write" and is_record and counts["record"] == n:
            write_half_then_die(path.with_name(f".tmp-{path.name}"), data)
        real_write_atomic(path, data)

    def record(self, name, point_ids):
        if fault == "kill-before-record" and counts["part"] == n:
            die()
        real_record(self, name, point_ids)
        if fault == "kill-after-records" and counts["record"] == n:
            die()

    pq.write_table = write_table
    tsjax.dataset.write_atomic = write_atomic
    tsjax.dataset.ResultsDir._record = record


if __name__ == "__main__":
    fault, n, *arguments = sys.argv[1:]
    if fault not in FAULTS:
        sys.exit(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
    install(fault, int(n))
    sys.exit(main(arguments))
