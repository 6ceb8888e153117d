"""Reading and writing weights: HF safetensors folders and Orbax checkpoints."""
