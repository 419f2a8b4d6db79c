"""Provenance recorded with every dataset: versions, git commit, devices, platform."""

import datetime
import importlib.metadata
import platform
import subprocess
import tomllib
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


def git_commit(package_dir: Path | None = None) -> str | None:
    """Return the commit of the tsjax source checkout that `package_dir` is imported from.

    `package_dir` defaults to this tsjax package. The commit is recorded only when that
    folder is `tsjax/` at the top level of a git work tree whose pyproject.toml names the
    project tsjax. An installed copy (in site-packages, even one inside a checkout) gives
    None, because git would report the commit of whatever repository contains it. The
    suffix `-dirty` means files under tsjax/ or analysis/ differ from that commit: tracked
    files with changes, or untracked files that .gitignore does not exclude.
    """
    package_dir = Path(package_dir or Path(__file__).parent).resolve()
    try:
        top_level = Path(_git(package_dir, "rev-parse", "--show-toplevel")).resolve()
        if package_dir != top_level / "tsjax" or not _names_tsjax(top_level / "pyproject.toml"):
            return None
        commit = _git(top_level, "rev-parse", "HEAD")
        changes = _git(top_level, "status", "--porcelain", "--untracked-files=all", "--",
                       "tsjax", "analysis")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if changes else commit


def _git(directory: Path, *arguments: str) -> str:
    """Run git in `directory` and return its stripped output; raise on a nonzero exit."""
    return subprocess.run(["git", *arguments], cwd=directory, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


def _names_tsjax(pyproject: Path) -> bool:
    """Return whether `pyproject` is a readable pyproject.toml of the project tsjax."""
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    project = document.get("project")
    return isinstance(project, dict) and project.get("name") == "tsjax"


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
