"""The Gemma-3 text decoder as pure functions over a params pytree."""
