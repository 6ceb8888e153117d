"""One process of the two-process CPU job of ``test_sharding_multihost.py`` (not a test module itself).

``python tests/multihost_worker.py FOLDER PAIRS SHARED_OUT OUT.npz``, with ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set as a cluster would: loads the tiny checkpoint onto one
mesh over every process's devices (``mesh.distributed``, the documented route), saves :func:`measure`'s
results, then runs ``jaxsteer extract`` into ``SHARED_OUT``, a folder both processes are given. The test
imports :func:`measure` for the single-process reference.
"""

from __future__ import annotations

import sys

import numpy as np

MESH = {"data": 2, "fsdp": 2, "model": 2}  # 8 devices: 4 in each process
TEXTS = ["the cat sat", "a b c d e f g", "hello", "world of words here", "x", "y z", "one two", "ab cd ef"]


def measure(model) -> dict[str, np.ndarray]:
    """Steered logits, extracted vectors, a sweep, the three scorers and generation (one plan, a plan grid)."""
    import jaxsteer
    from jaxsteer.scoring import continuation_logprobs, generate_answers, option_logprob_fn, score_multiple_choice
    from jaxsteer.sharding import to_host
    from jaxsteer.steering.extract import TokenPairs, extract
    from jaxsteer.steering.sweep import layer_gamma_grid, run_grid
    from jaxsteer.tokens import encode_batch

    cfg, tok = model.config, model.tokenizer
    ids, mask = encode_batch(tok, TEXTS)
    vecs = np.random.default_rng(0).normal(size=(cfg.num_layers, cfg.hidden_size)).astype(np.float32)
    steer = jaxsteer.Steering.from_layers(cfg, {2: vecs[2], 5: vecs[5]}, gamma=3.0)
    grid = layer_gamma_grid(vecs, [2, 5], [0.0, 4.0])
    options = (5, 6, 7)
    pairs = TokenPairs.from_texts(tok, TEXTS[:4], TEXTS[4:])
    mc = score_multiple_choice(
        model, ids, mask, options, [0] * len(TEXTS), steering=steer, batch_size=4, progress=False
    )
    return {
        "logits": to_host(jaxsteer.forward(model, ids, mask, steering=steer).logits),
        "vectors": extract(model, pairs, batch_size=4, progress=False).vectors,
        "sweep": run_grid(model, ids, mask, grid, option_logprob_fn(options), chunk_size=2, progress=False),
        "mc": mc.logprobs,
        "loglik": continuation_logprobs(model, [[5, 6], [7]] * 4, [[8], [9, 10]] * 4, steering=steer, batch_size=4),
        "answers": np.array(generate_answers(model, tok, TEXTS, 3, steering=steer, batch_size=4, progress=False)),
        "tokens": to_host(jaxsteer.generate(model, ids, 5, mask, steering=steer, eos_token_id=-1)),
        "grid_tokens": to_host(jaxsteer.generate(model, ids, 5, mask, plans=grid, eos_token_id=-1)),
    }


def extract_args(folder: str, pairs: str, out: str) -> list[str]:
    """``jaxsteer extract`` of the pairs file in fp32 (the single-process reference runs the same)."""
    return ["extract", "--model", folder, "--pairs", pairs, "--out", out, "--dtype", "float32", "--quiet",
            "--set=batch_size=4"]  # fmt: skip


def main(folder: str, pairs: str, shared_out: str, out: str) -> None:
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxsteer
    from jaxsteer.cli import main as cli
    from jaxsteer.results import written
    from jaxsteer.sharding import MeshSpec

    model = jaxsteer.load_pretrained(folder, dtype="float32", mesh=MeshSpec(**MESH, distributed=True))
    assert jax.process_count() == 2 and jax.local_device_count() == 4 and jax.device_count() == 8
    assert not model.params["embed"].is_fully_addressable  # the mesh spans both processes
    results = measure(model)
    mesh = [f"--set=mesh.{axis}={n}" for axis, n in MESH.items()] + ["--set=mesh.distributed=true"]
    code = cli([*extract_args(folder, pairs, shared_out), *mesh])
    results["extract_exit"] = np.array(code)
    results["written"] = np.array(written(), dtype=str)  # what this process put in place
    np.savez(out, **results)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:5])
