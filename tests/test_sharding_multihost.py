"""Multi-host inference, for real: two processes of one ``jax.distributed`` job on CPU (4 forced devices each,
gloo collectives) share one (data 2, fsdp 2, model 2) mesh, so no process can address a whole result. Each
reads every result back whole (:func:`jaxsteer.sharding.to_host`) and equals the single-process run (fp32
≤ 1e-5 relative, tokens and texts identical); ``jaxsteer extract`` run by both into one folder is written by
process 0 alone. Then the parts on their own: ``to_host`` on local values, ``initialize`` from the environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_checkpoint import tiny_folder, tiny_model  # noqa: F401

import jaxsteer.sharding as M
from jaxsteer.errors import ConfigError

HERE = Path(__file__).resolve().parent
WORKER = HERE / "multihost_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_back_what_one_process_computes(tmp_path, tiny_folder, tiny_model):  # noqa: F811
    sys.path.insert(0, str(HERE))
    from multihost_worker import TEXTS, extract_args, measure

    from jaxsteer.cli import main
    from jaxsteer.steering.vectors_io import load_vectors

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"positive": p, "negative": n}) + "\n" for p, n in zip(TEXTS[:4], TEXTS[4:])))
    shared = tmp_path / "shared"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}",
        JAX_NUM_PROCESSES="2",
    )
    procs, logs = [], []
    for i in (0, 1):
        logs.append(open(tmp_path / f"log{i}.txt", "w+"))  # noqa: SIM115 - closed below
        args = [sys.executable, str(WORKER), tiny_folder, str(pairs), str(shared), str(tmp_path / f"out{i}.npz")]
        procs.append(subprocess.Popen(args, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=logs[i], stderr=logs[i]))
    try:
        ref = measure(tiny_model)  # the single-process run, while the two processes work
        assert main(extract_args(tiny_folder, str(pairs), str(tmp_path / "one"))) == 0
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        tails = []
        for log in logs:
            log.seek(0)
            tails.append("".join(line for line in log if "[Gloo]" not in line)[-3000:])
            log.close()
    assert codes == [0, 0], tails
    for i in (0, 1):
        got = np.load(tmp_path / f"out{i}.npz")
        for key, want in ref.items():
            assert got[key].shape == want.shape, (i, key)
            if want.dtype.kind == "f":
                err = np.abs(got[key] - want).max() / np.abs(want).max()
                assert err <= 1e-5, (i, key, err)
            else:
                assert np.array_equal(got[key], want), (i, key)
        assert int(got["extract_exit"]) == 0
    # one writer: process 0 put the vectors and the manifest in place, process 1 nothing, no temporary left
    files = sorted(os.listdir(shared))
    assert files == ["en_pairs.safetensors", "manifest.json"], files
    assert sorted(os.path.basename(p) for p in np.load(tmp_path / "out0.npz")["written"]) == files
    assert len(np.load(tmp_path / "out1.npz")["written"]) == 0
    one = load_vectors(str(tmp_path / "one" / "en_pairs.safetensors")).vectors
    two = load_vectors(str(shared / "en_pairs.safetensors")).vectors
    assert np.abs(two - one).max() <= 1e-5 * np.abs(one).max()


def test_to_host_reads_local_values_as_np_asarray_does():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    on_device = M.to_host(jax.numpy.asarray(x))
    assert isinstance(on_device, np.ndarray) and np.array_equal(on_device, x)
    assert M.to_host(x) is x and np.array_equal(M.to_host([[1, 2], [3, 4]]), [[1, 2], [3, 4]])


def test_initialize_passes_on_the_process_count_and_id_from_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    M.initialize(M.MeshSpec())  # not asked for: nothing
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    M.initialize(M.MeshSpec(distributed=True))
    assert calls == [{"num_processes": 4, "process_id": 3}]
    monkeypatch.delenv("JAX_NUM_PROCESSES")
    monkeypatch.delenv("JAX_PROCESS_ID")
    M.initialize(M.MeshSpec(distributed=True))  # unset: jax detects the cluster's
    assert calls[-1] == {"num_processes": None, "process_id": None}
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(ConfigError, match=r"JAX_PROCESS_ID='one' must be a whole number"):
        M.initialize(M.MeshSpec(distributed=True))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    M.initialize(M.MeshSpec(distributed=True))  # the job initialized it itself: left as it is
    assert len(calls) == 2
