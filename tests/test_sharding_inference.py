"""Sharded inference on 8 forced host devices equals one device: forward (steered), extraction, the
shared-prefix sweep, generation (one plan and a grid of plans) and a small ``run_experiment``, for two
mesh shapes — one whose ``model`` axis splits the attention heads; bad meshes are refused in one line
before any weight is read. (fp32, logits ≤ 1e-5 relative, tokens identical.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jax.sharding import PartitionSpec as P

import jaxsteer.sharding as M

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    import jax, numpy as np
    jax.config.update("jax_default_matmul_precision", "highest")
    assert jax.device_count() == 8, jax.device_count()
    sys.path.insert(0, "tests")
    from tiny_checkpoint import FIXTURES, build_tiny_folder
    import jaxsteer
    from jax.sharding import PartitionSpec as P
    from jaxsteer.cli import main
    from jaxsteer.scoring import option_logprob_fn
    from jaxsteer.sharding import MeshSpec
    from jaxsteer.steering.extract import TokenPairs, extract
    from jaxsteer.steering.sweep import layer_gamma_grid, run_grid
    from jaxsteer.study.experiment import ExperimentConfig
    from jaxsteer.study.pipeline import run_experiment
    from jaxsteer.tokens import encode_batch

    tmp = sys.argv[1]
    folder = build_tiny_folder(tmp)
    one = jaxsteer.load_pretrained(folder, dtype="float32")
    cfg = one.config
    texts = ["the cat sat", "a b c d e f g", "hello", "world of words here", "x", "y z", "one two", "ab cd ef"]
    ids, mask = encode_batch(one.tokenizer, texts)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(cfg.num_layers, cfg.hidden_size)).astype(np.float32)
    steer = jaxsteer.Steering.from_layers(cfg, {2: vecs[2], 5: vecs[5]}, gamma=3.0)
    pairs = TokenPairs.from_texts(one.tokenizer, texts[:4], texts[4:])
    grid = layer_gamma_grid(vecs, [2, 5], [0.0, 4.0])
    score = option_logprob_fn((5, 6, 7))

    def measure(m):
        out = {}
        out["logits"] = np.asarray(jaxsteer.forward(m, ids, mask, steering=steer).logits)
        out["hidden"] = np.asarray(jaxsteer.forward(m, ids, mask, return_hidden=True, logits_at="last").hidden)
        out["vectors"] = extract(m, pairs, batch_size=4, progress=False).vectors
        out["sweep"] = run_grid(m, ids, mask, grid, score, chunk_size=2, progress=False)
        out["tokens"] = np.asarray(jaxsteer.generate(m, ids, 5, mask, steering=steer, eos_token_id=-1))
        out["grid_tokens"] = np.asarray(jaxsteer.generate(m, ids, 5, mask, plans=grid, eos_token_id=-1))
        # the weights cut per layer for the call and stacked again: same tokens, same placement after
        placed = {k: v.sharding for k, v in m.params["layers"].items()}
        out["moved_grid_tokens"] = np.asarray(
            jaxsteer.generate(m, ids, 5, mask, plans=grid, eos_token_id=-1, decode_layout="moved"))
        assert {k: v.sharding for k, v in m.params["layers"].items()} == placed
        return out

    ref = measure(one)
    for shape in ({"data": 2, "fsdp": 2, "model": 2}, {"data": 4, "model": 2}):
        m = jaxsteer.load_pretrained(folder, dtype="float32", mesh=MeshSpec(**shape))
        assert m.mesh.shape == {"data": shape["data"], "fsdp": shape.get("fsdp", 1), "model": 2}, m.mesh.shape
        q = m.params["layers"]["q_proj"]
        assert q.sharding.spec == P(None, "model", "fsdp"), q.sharding
        assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape[1] == q.shape[1] // 2
        import jaxsteer.model.decode as dec, jaxsteer.model.plan_tree as pt
        pinned, real_pin = [], pt.pin_rows
        def recording(mod):
            return lambda x, mesh, axis=0: pinned.append((mod, mesh is m.mesh)) or real_pin(x, mesh, axis)
        pt.pin_rows, dec.pin_rows = recording("tree"), recording("decode")
        got = measure(m)
        assert {("tree", True), ("decode", True)} <= set(pinned), set(pinned)  # the grid generation hands the mesh down
        pinned.clear()  # and so does the sweep tail (a new tree: traced anew)
        run_grid(m, ids, mask, layer_gamma_grid(vecs, [3], [1.0, 2.0]), score, chunk_size=2, progress=False)
        assert ("tree", True) in pinned and ("decode", True) not in pinned, set(pinned)
        pt.pin_rows = dec.pin_rows = real_pin
        for key in ("logits", "hidden", "vectors", "sweep"):
            scale = np.abs(ref[key]).max()
            err = np.abs(got[key] - ref[key]).max() / scale
            assert err <= 1e-5, (shape, key, err)
        for key in ("tokens", "grid_tokens", "moved_grid_tokens"):
            assert np.array_equal(got[key], ref[key]), (shape, key)
        assert np.array_equal(got["moved_grid_tokens"], got["grid_tokens"])
        # a grid's prompt-major rows are split over the batch shards, not replicated on each (pin_rows)
        import jax.numpy as jnp
        from jaxsteer.model.model import on_mesh
        from jaxsteer.model.plan_tree import plan_tree, run_plan_tree
        from jaxsteer.model.transformer import default_positions, prepare
        deltas = np.asarray(grid.deltas, np.float32)
        tree = plan_tree(deltas, 2)

        def grid_rows(params, i, mk):
            h, _ = prepare(params, i, mk, config=cfg)
            pos = default_positions(mk, i.shape)
            return run_plan_tree(params["layers"], h, tree, jnp.asarray(deltas), positions=pos, attention_mask=mk,
                                 steer_mask=jnp.ones(i.shape, bool), config=cfg, mesh=m.mesh)[0]
        rows = jax.jit(grid_rows)(m.params, *on_mesh(m, ids, mask))
        assert rows.addressable_shards[0].data.shape[0] == len(deltas) * len(ids) // 4, rows.sharding
        # balanced extraction batches stay a multiple of the batch shards (10 rows at ≤ 8: 2 × 8, not 2 × 5
        # replicated on every shard)
        import jaxsteer.steering.extract as ex
        replicated, real = [], ex.layer_activations
        ex.layer_activations = lambda p, i, mk, **k: replicated.append(i.sharding.is_fully_replicated) or real(
            p, i, mk, **k)
        extract(m, TokenPairs.from_texts(one.tokenizer, texts[:5], texts[3:]), batch_size=8, progress=False)
        ex.layer_activations = real
        assert replicated == [False, False], replicated
        print("mesh", shape, "ok", flush=True)

    # the whole experiment: the same accuracies on one device and on a (data 2, fsdp 2, model 2) mesh
    exp = ExperimentConfig(model=folder, dtype="float32", data=FIXTURES, languages=("zh",), allow_small=True,
                           loc_gammas=(0.0, 1.0), max_new_tokens=3, batch_size=8)
    runs = {}
    for name, mesh in (("one", None), ("mesh", MeshSpec(data=2, fsdp=2, model=2))):
        out = os.path.join(tmp, name)
        res = run_experiment(dataclasses.replace(exp, mesh=mesh, out=out), {"base": folder}, ("base",), out,
                             progress=False)
        runs[name] = {k: (v.gmmlu, v.blend) for k, v in res["results"].items()}
    assert runs["one"] == runs["mesh"], runs
    print("run ok", flush=True)

    # bad meshes: one line, exit 2, before any weight is read
    def refused(*sets):
        args = ["eval", "--model", folder, "--data", FIXTURES, "--lang", "zh", "--set", "allow_small=true",
                "--out", os.path.join(tmp, "bad"), "--quiet"]
        for s in sets:
            args += ["--set", s]
        import contextlib, io
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(args)
        assert rc == 2 and not os.path.exists(os.path.join(tmp, "bad")), (rc, err.getvalue())
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        return err.getvalue()

    assert "does not cover the 8 available device(s)" in refused("mesh.data=3")
    assert "does not divide the model's 2 key/value heads" in refused("mesh.data=2", "mesh.model=4")
    assert "batch_size=6 is not divisible by the mesh's 4 batch shards" in refused(
        "mesh.data=4", "mesh.model=2", "batch_size=6")
    assert "does not divide the model's 2 key/value heads" in refused("mesh.data=2,mesh.model=4")  # one --set
    print("refusals ok", flush=True)

    # jaxsteer generate on a mesh (any prompt count: rows that do not divide the shards run replicated)
    def generated(*sets):
        import contextlib, io
        out = io.StringIO()
        args = ["generate", "--model", folder, "--dtype", "float32", "--max-new-tokens", "4"]
        args += [a for t in texts[:3] for a in ("--prompt", t)] + [a for s in sets for a in ("--set", s)]
        with contextlib.redirect_stdout(out):
            assert main(args) == 0
        return out.getvalue()

    plain = generated()
    assert generated("mesh.data=2,mesh.fsdp=2,mesh.model=2") == plain == generated("mesh.model=2"), plain
    print("generate ok", flush=True)
    """
)


@pytest.mark.slow
def test_sharded_inference_equals_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "refusals ok" in proc.stdout and "generate ok" in proc.stdout
    # prompt-major grid rows: a plan-tree branch takes its group's rows inside each batch shard; with plan-major
    # rows the 2×2×2 mesh's branches crossed shards and XLA replicated those blocks (it says so on stderr)
    assert "Involuntary full rematerialization" not in proc.stderr, proc.stderr[-3000:]


def test_inference_rules_split_heads_and_columns():
    mesh = M.make_mesh(M.MeshSpec(), __import__("jax").devices()[:1])
    spec = lambda name, shape: M.inference_spec(name, shape, mesh)  # noqa: E731
    assert spec("q_proj", (48, 4096, 3840)) == P(None, "model", "fsdp")
    assert spec("down_proj", (48, 3840, 15360)) == P(None, "fsdp", "model")
    assert spec("embed", (262208, 3840)) == P("model", "fsdp")
    assert spec("input_layernorm", (48, 3840)) == P()


def test_memory_check_names_the_numbers(monkeypatch):
    from jaxsteer.config import gemma3_12b
    from jaxsteer.errors import ConfigError

    monkeypatch.setattr(M.devices, "free_bytes", lambda device: 16 * 2**30)  # a TPU v5e chip
    with pytest.raises(ConfigError, match=r"the weights need 2[0-9.]+ GiB per device .* has 16.0 GiB free"):
        M.check_inference_mesh(M.MeshSpec(), gemma3_12b(), 2)
