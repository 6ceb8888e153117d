"""Memory queries that mean the same on GPU and TPU and say "unknown" where a device does not report."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer import devices


class FakeDevice:
    """A device whose ``memory_stats`` answers ``stats`` (or raises it, when it is an exception)."""

    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        if isinstance(self.stats, Exception):
            raise self.stats
        return self.stats


def fake_array(shape, shard_shape, on, itemsize=4):
    """What ``bytes_per_device`` reads of an array: shape, dtype and sharding."""
    sharding = types.SimpleNamespace(shard_shape=lambda s: shard_shape, addressable_devices=set(on))
    return types.SimpleNamespace(shape=shape, dtype=np.dtype(f"f{itemsize}"), sharding=sharding)


def test_platform_is_the_default_backend():
    assert devices.platform() == jax.default_backend()


@pytest.mark.parametrize(
    ("stats", "free"),
    [
        ({"bytes_limit": 1000, "bytes_in_use": 300, "peak_bytes_in_use": 900}, 700),  # GPU and TPU alike
        ({"bytes_limit": 1000}, 1000),
        ({"bytes_in_use": 300}, None),
        ({}, None),
        (None, None),  # the CPU
        (NotImplementedError("memory_stats"), None),
        (RuntimeError("UNIMPLEMENTED"), None),
    ],
)
def test_free_bytes(stats, free):
    assert devices.free_bytes(FakeDevice(stats)) == free


def test_free_bytes_of_the_real_cpu_is_unknown():
    if jax.default_backend() != "cpu":
        pytest.skip("runs on the CPU backend")
    assert devices.free_bytes(jax.devices()[0]) is None


def test_bytes_per_device_of_placed_and_host_arrays():
    tree = {"a": jnp.zeros((3, 4), jnp.float32), "b": [jnp.zeros(5, jnp.bfloat16)], "host": np.zeros(2, np.int8)}
    assert devices.bytes_per_device(tree) == {jax.devices()[0]: 48 + 10 + 2}


def test_bytes_per_device_counts_shards_and_replicas():
    tree = [
        fake_array((8, 4), (4, 4), on=["d0", "d1"]),  # sharded in two: 64 bytes each
        fake_array((10,), (10,), on=["d0", "d1"], itemsize=2),  # replicated: 20 bytes each
        fake_array((6,), (6,), on=["d1"]),  # on one device only
    ]
    assert devices.bytes_per_device(tree) == {"d0": 84, "d1": 108}


@pytest.mark.parametrize(
    ("free", "room"),
    [
        ({"d0": 126, "d1": 126}, True),
        ({"d0": 126, "d1": 125}, False),  # one full device is enough to refuse
        ({"d0": None, "d1": 10}, False),
        ({"d0": None, "d1": None}, True),  # nobody reports: assume room, as on the CPU
    ],
)
def test_room_for_copy_needs_room_on_every_device(monkeypatch, free, room):
    monkeypatch.setattr(devices, "free_bytes", lambda d: free[d])
    tree = [fake_array((25,), (25,), on=["d0", "d1"])]  # 100 bytes per device; margin 1.25 → need > 125
    assert devices.room_for_copy(tree) is room


def test_room_for_copy_on_the_cpu():
    assert devices.room_for_copy({"w": jnp.zeros((4, 4))})


@pytest.mark.parametrize(("everywhere", "room"), [([True, True], True), ([True, False], False)])
def test_room_for_copy_is_agreed_by_every_process_of_a_job(monkeypatch, job, everywhere, room):
    """Each process sees only its own devices; one process short of room means no process unrolls the decode
    step (different programs on different processes would never meet in their collectives)."""
    from jax.experimental import multihost_utils

    asked = []
    monkeypatch.setattr(devices, "free_bytes", lambda d: 126)  # room on this process's devices
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda x: asked.append(bool(x)) or np.array(everywhere))
    assert devices.room_for_copy([fake_array((25,), (25,), on=["d0"])]) is room
    assert asked == [True]
