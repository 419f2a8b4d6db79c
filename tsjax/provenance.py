"""Provenance recorded with every dataset: versions, git commit, devices, platform."""

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = ("tsjax", "jax", "jaxlib", "equinox", "optax", "numpy", "pandas", "pyarrow")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """Return the commit of the tsjax source checkout, with `-dirty` if it has changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=source, capture_output=True, text=True, timeout=10,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if changes else commit


def device_summary() -> dict:
    import jax

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "device_count": len(devices), "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count()}


def collect_provenance() -> dict:
    return {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "packages": package_versions(), "git_commit": git_commit(),
            "devices": device_summary(), "python": platform.python_version(),
            "machine": platform.machine()}
