"""The decode layouts agree: the scanned step over a full-length cache and the unrolled step whose sliding
layers keep only a window-sized ring buffer (window < prompt + new tokens, left padding, steering), on a
per-layer weight copy or on static slices of the stacked weights (``"sliced"``)."""

import numpy as np

import jaxsteer
from jaxsteer.config import tiny


def test_ring_buffer_decode_equals_scanned_full_cache():
    cfg = tiny(sliding_window=3)
    model = jaxsteer.Model.random(cfg, seed=5, norm_std=0.3)
    rng = np.random.RandomState(1)
    ids = rng.randint(3, cfg.vocab_size, size=(3, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :5] = 0
    steer = jaxsteer.Steering.from_layers(cfg, {1: rng.randn(cfg.hidden_size)}, gamma=2.0, scope="generated")
    kw = dict(max_new_tokens=9, attention_mask=mask, steering=steer, eos_token_id=-1)
    scanned = np.asarray(jaxsteer.generate(model, ids, decode_layout="scan", **kw))
    ring = np.asarray(jaxsteer.generate(model, ids, decode_layout="unrolled", **kw))
    sliced = np.asarray(jaxsteer.generate(model, ids, decode_layout="sliced", **kw))
    np.testing.assert_array_equal(ring, scanned)
    np.testing.assert_array_equal(sliced, scanned)
    assert len(set(scanned[0].tolist())) > 1  # not a degenerate constant output


def test_fused_layer_copy_computes_the_same_block():
    """The unrolled layout's per-layer copy stacks q/k/v and gate/up; the block gives the same output from it."""
    import jax
    import jax.numpy as jnp

    from jaxsteer.model.gemma3 import GEMMA3
    from jaxsteer.model.transformer import block, prepare, slice_layers

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=2, norm_std=0.3)
    layer = jax.tree.map(lambda a: a[0], slice_layers(model.params["layers"], 0, 1))
    fused = GEMMA3.fuse_layer(layer)
    assert {"qkv_proj", "gate_up_proj"} <= set(fused) and not {"q_proj", "up_proj"} & set(fused)
    ids = jnp.asarray(np.random.RandomState(0).randint(3, cfg.vocab_size, size=(2, 6)))
    h, ctx = prepare(model.params, ids, jnp.ones_like(ids), config=cfg)
    (out, kv), (out_f, kv_f) = (block(p, h, ctx, True, cfg, "xla") for p in (layer, fused))
    np.testing.assert_allclose(np.asarray(out_f), np.asarray(out), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(kv_f[1]), np.asarray(kv[1]), rtol=1e-5, atol=1e-5)


def _while_bodies(hlo: str) -> dict[str, list[str]]:
    """Each computation of an optimised HLO module named as some ``while`` loop's body: its lines."""
    import re

    names = set(re.findall(r"body=(%?[\w.\-]+)", hlo))
    bodies, current = {}, None
    for line in hlo.splitlines():
        head = line.split(" ")[0]
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            current = head if head in names or "%" + head.lstrip("%") in names else None
            if current is not None:
                bodies[current] = []
        elif current is not None:
            bodies[current].append(line)
    return bodies


def test_unrolled_decode_updates_the_cache_in_place():
    """Each unrolled layer writes its new key/value before attending, so the decode loop never copies a
    layer's cache (reading the old cache beside a later write made XLA copy all of them every step)."""
    import jax.numpy as jnp

    from jaxsteer.model import decode

    for window in (64, 3):  # full caches, and ring buffers on the sliding layers
        cfg = tiny(sliding_window=window)
        model = jaxsteer.Model.random(cfg, seed=1)
        ids = jnp.ones((2, 6), jnp.int32)
        split = decode.split_layers(model.params["layers"], cfg, fuse=True)
        hlo = (
            decode.generate_core.lower(
                model.params,
                ids,
                ids,
                None,
                np.int32(0),
                config=cfg,
                max_new_tokens=5,
                temperature=0.0,
                top_k=None,
                eos_ids=(1,),
                impl="xla",
                split_layers=split,
            )  # fmt: skip
            .compile()
            .as_text()
        )
        shapes = {f"[2,{cfg.num_kv_heads},{n},{cfg.head_dim}]" for n in (11, window)}  # full cache, ring
        bodies = _while_bodies(hlo)
        decode_body = [b for b in bodies.values() if any(s in line for line in b for s in shapes)]
        assert decode_body, "no decode loop found"
        copies = [line for b in decode_body for line in b if " copy(" in line and any(s in line for s in shapes)]
        assert not copies, copies[:2]


def test_layer_copy_is_one_program_for_every_layer():
    """The unrolled layout's weight copy compiles one program, whatever the depth (the layer is an argument: a
    program slicing every layer compiled for seconds at 12B), and gives each layer's weights, fused or not."""
    import jax
    from compile_counter import compiles

    from jaxsteer.model import decode
    from jaxsteer.model.gemma3 import GEMMA3

    cfg = tiny()
    layers = jaxsteer.Model.random(cfg, seed=3).params["layers"]
    for fuse in (False, True):
        with compiles() as n:
            split = decode.split_layers(layers, cfg, fuse=fuse)
        assert n() == 1 and len(split) == cfg.num_layers
        for i in (0, 4):
            want = jax.tree.map(lambda a, i=i: a[i], layers)
            want = GEMMA3.fuse_layer(want) if fuse else want
            assert sorted(split[i]) == sorted(want)
            for name in want:
                np.testing.assert_array_equal(np.asarray(split[i][name]), np.asarray(want[name]))


def test_unrolled_prefill_scans_in_quarters():
    """The unrolled step copies its per-layer caches out of the prefill's stacked outputs: scanned in quarters,
    one part's stack beside the copies is a quarter of the cache (the scan layout keeps one scan: its cache is
    the stack itself)."""
    import jax.numpy as jnp
    from tiny_checkpoint import scan_eqns

    from jaxsteer.model import decode

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=1)
    ids = jnp.ones((2, 6), jnp.int32)
    kw = dict(config=cfg, max_new_tokens=3, temperature=0.0, top_k=None, eos_ids=(1,), impl="xla")
    copy = decode.split_layers(model.params["layers"], cfg, fuse=True)
    for split, lengths in ((copy, [2, 2, 2, 2]), (None, [8, 8])):  # scan layout: the prefill, then the decode step
        traced = decode.generate_core.trace(model.params, ids, ids, None, np.int32(0), split_layers=split, **kw)
        assert [e.params["length"] for e in scan_eqns(traced.jaxpr)] == lengths


def test_a_models_decode_layout_is_its_generations_default(monkeypatch):
    """``Model.decode_layout`` decides where a call does not: "scan" never copies the layers, and decodes the
    same tokens as the default (a per-layer copy where it fits — always on a CPU); a call's own choice wins."""
    import dataclasses

    import pytest

    from jaxsteer.errors import InputError
    from jaxsteer.model import decode

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=4, norm_std=0.3)
    ids = np.random.RandomState(2).randint(3, cfg.vocab_size, size=(2, 5))
    copies = []
    split = decode.split_layers
    monkeypatch.setattr(decode, "split_layers", lambda *a, **k: copies.append(1) or split(*a, **k))
    unrolled = np.asarray(jaxsteer.generate(model, ids, 6, eos_token_id=-1))
    assert copies == [1]
    scanning = dataclasses.replace(model, decode_layout="scan")
    scanned = np.asarray(jaxsteer.generate(scanning, ids, 6, eos_token_id=-1))
    assert copies == [1]  # no copy made for the scan
    np.testing.assert_array_equal(scanned, unrolled)
    jaxsteer.generate(scanning, ids, 6, eos_token_id=-1, decode_layout="unrolled")
    assert copies == [1, 1]
    with pytest.raises(InputError, match="decode_layout=.fast.: expected one of auto, scan, unrolled, sliced, moved"):
        dataclasses.replace(model, decode_layout="fast")


def test_moved_weights_decode_as_the_scan_does_and_are_stacked_again():
    """``"moved"``: the unrolled step on the model's own weights cut into per-layer arrays for the call (no
    copy: each stacked leaf is freed once cut) — the same tokens as the scan, for one plan and for a grid of
    plans with a shared prefix; afterwards the weights are stacked again with the same values, and a call
    that fails inside the move leaves them stacked too."""
    import jax

    from jaxsteer.model import decode

    cfg = tiny(sliding_window=3)
    model = jaxsteer.Model.random(cfg, seed=7, norm_std=0.3)
    before = jax.tree.map(np.asarray, model.params["layers"])
    old_leaf = jax.tree.leaves(model.params["layers"])[0]
    rng = np.random.RandomState(3)
    ids = rng.randint(3, cfg.vocab_size, size=(2, 6))
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    steer = jaxsteer.Steering.from_layers(cfg, {1: rng.randn(cfg.hidden_size)}, gamma=2.0)
    kw = dict(max_new_tokens=7, attention_mask=mask, eos_token_id=-1)
    plans = np.zeros((3, cfg.num_layers, cfg.hidden_size), np.float32)
    plans[1:, 2] = 3.0 * rng.randn(2, cfg.hidden_size)  # plans agree below block 2: a shared prefix, then a tree
    for extra in (dict(steering=steer), dict(plans=plans)):
        scanned = np.asarray(jaxsteer.generate(model, ids, decode_layout="scan", **kw, **extra))
        moved = np.asarray(jaxsteer.generate(model, ids, decode_layout="moved", **kw, **extra))
        np.testing.assert_array_equal(moved, scanned)
    assert len({tuple(r) for r in moved.reshape(-1, moved.shape[-1]).tolist()}) > 1
    assert old_leaf.is_deleted()  # really moved, not copied
    layers = model.params["layers"]
    assert isinstance(layers, dict)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, layers), before)

    def broken(*a, **k):
        raise RuntimeError("device lost")

    real = decode.generate_core
    decode.generate_core = broken
    try:
        with np.testing.assert_raises(RuntimeError):
            jaxsteer.generate(model, ids, decode_layout="moved", **kw)
    finally:
        decode.generate_core = real
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, model.params["layers"]), before)
    from jaxsteer.errors import InputError

    leaf = jax.tree.leaves(model.params["layers"])[0]
    with np.testing.assert_raises(InputError):
        jaxsteer.generate(model, ids, decode_layout="moved", **{**kw, "max_new_tokens": 0})
    assert not leaf.is_deleted()  # refused before anything moved


def test_auto_falling_back_to_the_scan_for_lack_of_room_hints_at_moved_once(monkeypatch, capsys):
    from jaxsteer.model import decode_memory

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=1)
    monkeypatch.setattr(decode_memory, "room_for_layer_copy", lambda params: False)
    monkeypatch.setattr(decode_memory, "_hinted", [])
    ids = np.random.RandomState(0).randint(3, cfg.vocab_size, size=(2, 4))
    for _ in range(2):
        jaxsteer.generate(model, ids, 2, eos_token_id=-1)
    assert capsys.readouterr().err.count("decode_layout='moved'") == 1
    jaxsteer.generate(model, ids, 2, eos_token_id=-1, decode_layout="scan")
    assert "moved" not in capsys.readouterr().err


def test_moving_the_weights_survives_an_interrupt_a_shared_leaf_and_keeps_their_placement(monkeypatch):
    """A Ctrl-C (here: raised by the cut's third slice) puts back what was cut; a leaf that two names share is
    cut once; weights that were not committed to a device stay uncommitted (a committed restack changed every
    later program's cache key); host arrays are refused before anything moves."""
    import jax

    from jaxsteer.errors import InputError
    from jaxsteer.model import decode_memory

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=4, norm_std=0.3)
    layers = model.params["layers"]
    layers["post_attention_layernorm"] = layers["input_layernorm"]  # one array under two names
    before = {k: np.asarray(v) for k, v in layers.items()}
    ids = np.random.RandomState(2).randint(3, cfg.vocab_size, size=(2, 5))
    kw = dict(max_new_tokens=4, eos_token_id=-1)
    scanned = np.asarray(jaxsteer.generate(model, ids, decode_layout="scan", **kw))
    np.testing.assert_array_equal(np.asarray(jaxsteer.generate(model, ids, decode_layout="moved", **kw)), scanned)
    after = model.params["layers"]
    assert all(not v.committed for v in after.values())
    assert after["post_attention_layernorm"] is after["input_layernorm"]
    real, calls = decode_memory._layer_of, []

    def interrupted(leaf, index):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(leaf, index)

    monkeypatch.setattr(decode_memory, "_layer_of", interrupted)
    with np.testing.assert_raises(KeyboardInterrupt):
        jaxsteer.generate(model, ids, decode_layout="moved", **kw)
    monkeypatch.setattr(decode_memory, "_layer_of", real)
    restored = model.params["layers"]
    assert isinstance(restored, dict) and not any(v.is_deleted() for v in restored.values())
    for name, value in before.items():
        np.testing.assert_array_equal(np.asarray(restored[name]), value)
    np.testing.assert_array_equal(np.asarray(jaxsteer.generate(model, ids, decode_layout="moved", **kw)), scanned)
    host = jaxsteer.Model(cfg, jax.tree.map(np.asarray, model.params))
    with np.testing.assert_raises(InputError):
        jaxsteer.generate(host, ids, decode_layout="moved", **kw)


def test_a_restack_the_device_cannot_do_goes_through_the_host_and_nnx_models_are_refused(monkeypatch):
    """Stacking again may fail on the device (out of memory): every leaf still goes back (through the host for
    the failed ones) before the error is raised — never a model whose weights are all freed. A model made by
    the nnx module shares its arrays with the module: moving them would free the module's, so it is refused."""
    from jaxsteer.errors import InputError
    from jaxsteer.model import decode_memory
    from jaxsteer.model.nnx_module import Gemma3

    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=6, norm_std=0.3)
    before = {k: np.asarray(v) for k, v in model.params["layers"].items()}
    ids = np.random.RandomState(4).randint(3, cfg.vocab_size, size=(2, 5))
    kw = dict(max_new_tokens=3, eos_token_id=-1)
    real, calls = decode_memory._stacker, []

    def failing(placement):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory while stacking")
        return real(placement)

    monkeypatch.setattr(decode_memory, "_stacker", failing)
    with np.testing.assert_raises(RuntimeError):
        jaxsteer.generate(model, ids, decode_layout="moved", **kw)
    layers = model.params["layers"]
    assert not any(v.is_deleted() for v in layers.values())
    for name, value in before.items():
        np.testing.assert_array_equal(np.asarray(layers[name]), value)
    monkeypatch.setattr(decode_memory, "_stacker", real)
    jaxsteer.generate(model, ids, decode_layout="moved", **kw)  # and the model still decodes
    nnx_model = Gemma3.from_model(model).to_model()
    with np.testing.assert_raises(InputError):
        jaxsteer.generate(nnx_model, ids, decode_layout="moved", **kw)
    assert not any(v.is_deleted() for v in model.params["layers"].values())
