import os

# Tests never write to the user's compilation cache, and run in float32 like sweeps.
os.environ.setdefault("TSJAX_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".jax_cache"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
