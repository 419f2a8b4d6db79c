"""JAX's persistent compilation cache, on by default, so a rerun does not recompile.

Compiled programs are stored in `~/.cache/tsjax/jax`, or in the directory named by the
environment variable `TSJAX_CACHE_DIR`; `TSJAX_CACHE_DIR=off` turns the cache off. A
cache directory that the user already set through JAX (`jax_compilation_cache_dir` or
`JAX_COMPILATION_CACHE_DIR`) is left as it is. Every program is cached, however small
or quick to compile, because a sweep's programs take seconds to compile and run for
less than that on small grids.
"""

import logging
import os
from pathlib import Path

import jax

logger = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "TSJAX_CACHE_DIR"
DISABLED_VALUES = ("off", "0", "false", "none")


def default_cache_dir() -> Path:
    """Return `$XDG_CACHE_HOME/tsjax/jax`, or `~/.cache/tsjax/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tsjax" / "jax"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at tsjax's directory; return it.

    Returns None when `TSJAX_CACHE_DIR=off`, and the user's directory when JAX already
    has one. Safe to call more than once.
    """
    setting = os.environ.get(CACHE_DIR_VARIABLE, "")
    if setting.strip().lower() in DISABLED_VALUES:
        return None
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)

    path = Path(setting).expanduser() if setting else default_cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
