"""Read tsjax results with pandas, fit the phase transition and plot it. Never imports JAX."""
