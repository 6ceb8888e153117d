"""Orbax train checkpoints: keep the last k, restore state + data position + config; bare params save/restore."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer.checkpoint.orbax import TrainCheckpointer, abstract_like, restore_params, save_params
from jaxsteer.errors import CheckpointError


def state(step: int) -> dict:
    return {
        "step": jnp.asarray(step, jnp.int32),
        "train": {"lora": {"a": jnp.full((2, 3), float(step)), "b": jnp.arange(4.0)}, "base": None},
        "opt_state": (jnp.asarray(step * 10, jnp.int32), {"mu": jnp.ones((2, 3), jnp.bfloat16)}),
    }


def test_keeps_last_k_and_restores_everything(tmp_path):
    ckpt = TrainCheckpointer(tmp_path / "ckpt", every=2, keep=2, async_save=True)
    assert ckpt.latest_step() is None
    assert [s for s in range(1, 7) if ckpt.due(s)] == [2, 4, 6] and ckpt.due(5, last=True)
    for s in (2, 4, 6):
        assert ckpt.save(s, state(s), data={"task": s, "align": s // 2}, config={"config_hash": "abc"})
    assert not ckpt.save(6, state(6), data={}, config={})  # an existing step is never overwritten
    ckpt.wait()
    assert ckpt.all_steps() == [4, 6] and ckpt.latest_step() == 6
    step, data, config = ckpt.read_meta()
    assert (step, data, config) == (6, {"task": 6, "align": 3}, {"config_hash": "abc"})
    step, restored, data, _ = ckpt.restore(abstract_like(state(0)), step=4)
    assert step == 4 and data == {"task": 4, "align": 2}
    assert jax.tree.structure(restored) == jax.tree.structure(state(0))
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state(4))):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(CheckpointError, match="no checkpoint at step 2"):
        ckpt.restore(abstract_like(state(0)), step=2)
    ckpt.close()
    # a new manager on the same folder (a resumed process) sees the same checkpoints
    again = TrainCheckpointer(tmp_path / "ckpt")
    assert again.latest_step() == 6
    again.close()


def test_restore_into_a_mismatched_target_is_one_line(tmp_path):
    ckpt = TrainCheckpointer(tmp_path / "ckpt", async_save=False)
    ckpt.save(1, state(1), data={}, config={})
    wrong = state(0)
    wrong["train"]["lora"]["a"] = jnp.zeros((5, 5))
    with pytest.raises(CheckpointError, match="does not match this run"):
        ckpt.restore(abstract_like(wrong))
    ckpt.close()


def test_save_and_restore_params(tmp_path):
    params = {"embed": jnp.arange(12.0).reshape(3, 4).astype(jnp.bfloat16), "layers": {"q_proj": jnp.ones((2, 2, 2))}}
    path = save_params(tmp_path / "params", params)
    with pytest.raises(CheckpointError, match="already exists"):
        save_params(tmp_path / "params", params)
    for target in (None, params, abstract_like(params)):
        out = restore_params(path, target)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(params)):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    assert restore_params(path, params)["embed"].dtype == jnp.bfloat16
    with pytest.raises(CheckpointError, match="no params checkpoint"):
        restore_params(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"cannot restore params from .*empty") as e:
        restore_params(tmp_path / "empty", params)
    assert len(str(e.value).splitlines()) == 1
    wrong = {**params, "embed": jnp.zeros((5, 4), jnp.bfloat16)}
    with pytest.raises(CheckpointError, match="cannot restore params from"):
        restore_params(path, wrong)
