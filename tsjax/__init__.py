"""tsjax: a JAX sweep engine for temporal superposition in recurrent networks."""
