"""Partition rules by name, and a sharded step on 8 forced host devices equal to the single-device step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

import jaxsteer.sharding as M
from jaxsteer.sharding import MeshSpec

ROOT = Path(__file__).resolve().parents[1]


def test_partition_rules_by_name():
    # stacked projections: fsdp over the largest non-layer dim that divides evenly
    assert M.spec_for("base/layers/q_proj", (48, 4096, 3840), 8) == P(None, "fsdp")
    assert M.spec_for("base/layers/k_proj", (48, 2048, 3840), 8) == P(None, None, "fsdp")
    assert M.spec_for("base/layers/down_proj", (48, 3840, 15360), 8) == P(None, None, "fsdp")
    assert M.spec_for("base/layers/gate_proj", (48, 15360, 3840), 8) == P(None, "fsdp")
    # the layer axis is never sharded, even when it is the largest
    assert M.spec_for("base/layers/q_proj", (64, 8, 8), 8) == P(None, "fsdp")
    assert M.spec_for("base/layers/input_layernorm", (48, 3840), 8) == P()
    assert M.spec_for("base/final_norm", (3840,), 8) == P()
    assert M.spec_for("base/embed", (262208, 3840), 8) == P("fsdp")
    assert M.spec_for("base/embed", (262209, 3840), 8) == P()  # odd vocab: replicate that dim
    assert M.spec_for("lora/q_proj/a", (48, 8, 3840), 8) == P(None, None, "fsdp")
    assert M.spec_for("lora/q_proj/b", (48, 4096, 8), 8) == P(None, "fsdp")
    assert M.spec_for("base/layers/q_proj", (48, 4096, 3840), 1) == P()  # no fsdp axis: replicated


def test_optimizer_moments_follow_their_parameter():
    import optax

    mesh = M.make_mesh(MeshSpec(), jax.devices()[:1])
    params = {"base": {"layers": {"q_proj": jax.ShapeDtypeStruct((2, 8, 4), np.float32)}}, "lora": {}}
    labels = {"base": {"layers": {"q_proj": "train"}}, "lora": {}}
    tx = optax.multi_transform({"train": optax.adamw(1e-3), "frozen": optax.set_to_zero()}, labels)
    state = jax.eval_shape(tx.init, params)
    sh = M.opt_state_shardings(state, M.param_shardings(params, mesh), mesh)
    assert len(jax.tree.leaves(sh)) == len(jax.tree.leaves(state))


SCRIPT = textwrap.dedent(
    """
    import dataclasses, jax, numpy as np
    import jaxsteer.sharding as M
    from jaxsteer.cla import config as C, trainer as T
    from jaxsteer.errors import ConfigError

    def cfg(data, fsdp, loop="scan"):
        return C.validate(C.configfile.build(C.TrainConfig, {
            "method": "mist", "out": "/tmp/unused", "steps": 4,
            "model": {"preset": "tiny", "changes": {"num_layers": 2}},
            "train": {"trainable": "full", "batch_size": 16, "micro_batch": 8, "compute_dtype": "float32",
                      "remat": "nothing_saveable", "ce_chunk": 4, "layer_loop": loop},
            "optim": {"lr": 1e-2, "schedule": "constant", "warmup": 0, "weight_decay": 0.01},
            "mesh": {"data": data, "fsdp": fsdp}}))

    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        ids = rng.integers(3, 128, size=(2, 8, 12)).astype(np.int32)
        mask = np.ones_like(ids); mask[:, :3, 9:] = 0  # right padding on some rows
        w = (rng.random(ids.shape) < 0.7).astype(np.float32) * mask
        batches.append({"ids": ids, "mask": mask, "targets": np.roll(ids, -1, -1), "weights": w})

    def run(mesh, loop="scan"):
        setup = T.build(cfg(mesh.shape["data"], mesh.shape["fsdp"], loop), mesh)
        state, losses = T.init_state(setup), []
        for b in batches:
            state, m = setup.steps["task"](state, M.put_batch(b, mesh), None)
            losses.append(float(m["loss"]))
        return losses, jax.tree.map(np.asarray, state.params), state

    assert jax.device_count() == 8
    one_l, one_p, _ = run(M.make_mesh(C.MeshSpec(), jax.devices()[:1]))
    many_l, many_p, state = run(M.make_mesh(C.MeshSpec(data=2, fsdp=4)))
    q = state.params["base"]["layers"]["q_proj"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp"), q.sharding
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (2, 16, 32)
    np.testing.assert_allclose(many_l, one_l, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(many_p), jax.tree.leaves(one_p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # the unrolled layer loop (the GPU default) on the sharded weights: the same step
    unrolled_l, unrolled_p, _ = run(M.make_mesh(C.MeshSpec(data=2, fsdp=4)), "unrolled")
    np.testing.assert_allclose(unrolled_l, one_l, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(unrolled_p), jax.tree.leaves(one_p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    try:
        c = cfg(-1, 1)
        T.build(dataclasses.replace(c, train=dataclasses.replace(c.train, batch_size=12, micro_batch=12)))
    except ConfigError as e:
        assert "train.micro_batch=12 is not divisible by the mesh's 8 batch shards" in str(e), e
    else:
        raise AssertionError("a batch of 12 on 8 devices was accepted")
    print("OK", one_l, many_l)
    """
)


def test_sharded_step_equals_single_device_step():
    # opt level 0: the two programs compare with each other only, and compile twice as fast
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
