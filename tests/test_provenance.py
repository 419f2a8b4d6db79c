"""Tests of the git commit recorded in provenance, on throwaway git repositories."""

import shutil
import subprocess

import pytest

from tsjax.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")

PYPROJECT = '[project]\nname = "{name}"\nversion = "0.1.0"\n'


def git(directory, *arguments):
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                           *arguments], cwd=directory, capture_output=True, text=True,
                          check=True).stdout.strip()


def make_checkout(root, project="tsjax"):
    """Create a committed git work tree laid out like the tsjax source checkout."""
    (root / "tsjax").mkdir(parents=True)
    (root / "analysis").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=project))
    (root / "tsjax" / "__init__.py").write_text("")
    (root / "analysis" / "__init__.py").write_text("")
    (root / "README.md").write_text("readme\n")
    (root / ".gitignore").write_text("__pycache__/\n.venv/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return git(root, "rev-parse", "HEAD")


def test_clean_checkout_gives_commit(tmp_path):
    commit = make_checkout(tmp_path)

    assert git_commit(tmp_path / "tsjax") == commit


def test_changes_outside_packages_stay_clean(tmp_path):
    commit = make_checkout(tmp_path)
    (tmp_path / "README.md").write_text("edited\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    (tmp_path / "tsjax" / "__pycache__").mkdir()
    (tmp_path / "tsjax" / "__pycache__" / "x.pyc").write_bytes(b"ignored")

    assert git_commit(tmp_path / "tsjax") == commit


@pytest.mark.parametrize("change", ["edit tsjax", "edit analysis", "new tsjax module"])
def test_package_changes_mark_dirty(tmp_path, change):
    commit = make_checkout(tmp_path)
    if change == "edit tsjax":
        (tmp_path / "tsjax" / "__init__.py").write_text("x = 1\n")
    elif change == "edit analysis":
        (tmp_path / "analysis" / "__init__.py").write_text("x = 1\n")
    else:
        (tmp_path / "tsjax" / "extra.py").write_text("x = 1\n")

    assert git_commit(tmp_path / "tsjax") == f"{commit}-dirty"


def test_installed_copy_inside_checkout_gives_none(tmp_path):
    make_checkout(tmp_path)
    installed = tmp_path / ".venv" / "lib" / "python3" / "site-packages" / "tsjax"
    installed.mkdir(parents=True)

    assert git_commit(installed) is None


def test_other_project_gives_none(tmp_path):
    make_checkout(tmp_path, project="something-else")

    assert git_commit(tmp_path / "tsjax") is None


def test_outside_any_repository_gives_none(tmp_path):
    (tmp_path / "tsjax").mkdir()
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(name="tsjax"))

    assert git_commit(tmp_path / "tsjax") is None
