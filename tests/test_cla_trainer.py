"""CLA training on the fixtures: each loss goes down, resume = uninterrupted, NaN stops, bad configs fail in one line.

Every run uses a random 2-layer tiny Gemma-3 and a BPE tokenizer trained on the Korean fixtures, with the
batch holding the whole (tiny) dataset, so the loss sequence is comparable step to step. Runs of the same
config in one process share compiled steps (``jaxsteer.cla.trainer`` caches them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxsteer.cla import config as C
from jaxsteer.cla import trainer as T
from jaxsteer.configfile import merge

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "data"

BASE = {
    "steps": 6,
    "model": {
        "preset": "tiny",
        "changes": {"vocab_size": 512, "num_layers": 2},
        "tokenizer": "train",
        "tokenizer_vocab": 512,
    },
    "data": {"root": str(FIXTURES), "langs": ["ko"], "max_len": 128, "buckets": [128]},
    "train": {
        "batch_size": 8,
        "micro_batch": 4,
        "compute_dtype": "float32",
        "remat": "nothing_saveable",
        "ce_chunk": 64,
    },
    "lora": {"rank": 4, "alpha": 8.0, "dropout": 0.0},
    "optim": {"lr": 2e-2, "schedule": "constant", "warmup": 0},
    "checkpoint": {"every": 2, "keep": 3, "async_save": True},
    "log": {"progress": False},
    "export": {"dtype": "float32"},
}
MIST = {"method": "mist"}
MIDALIGN = {"method": "midalign", "train": {"micro_batch": 0}, "midalign": {"l_align": 0, "align_batch": 4}}
CLO = {"method": "clo", "train": {"trainable": "attention", "micro_batch": 0}, "optim": {"lr": 1e-2}}


def config(out, *updates) -> C.TrainConfig:
    data = {**BASE, "out": str(out)}
    for u in updates:
        data = merge(data, u)
    return C.validate(C.configfile.build(C.TrainConfig, data))


def losses_of(rows, kind=None, key="loss"):
    return [r[key] for r in rows if kind is None or r["kind"] == kind]


def frozen_unchanged(cfg, final_state):
    """Every frozen leaf of the trained state equals its initial value (a fresh init is deterministic)."""
    setup = T.build(cfg)
    start = T.init_state(setup)
    labels = jax.tree.leaves(setup.labels)
    pairs = zip(jax.tree.leaves(start.params), jax.tree.leaves(final_state.params), labels)
    moved = [lab for a, b, lab in pairs if not np.array_equal(np.asarray(a), np.asarray(b))]
    return set(moved) == {"train"}


def checkpoint_steps(run: Path) -> list[int]:
    ckpt = T.TrainCheckpointer(run / "checkpoints")
    try:
        return ckpt.all_steps()
    finally:
        ckpt.close()


def crash_run(cfg: C.TrainConfig, after: int) -> subprocess.CompletedProcess:
    """Training of ``cfg`` in a subprocess (``tests/kill_after_step.py``) that SIGKILLs itself after step ``after``."""
    import yaml

    path = Path(cfg.out).parent / "config.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
    cmd = [sys.executable, str(ROOT / "tests" / "kill_after_step.py"), str(path), str(after)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_mist_trains_resumes_after_kill_and_exports(tmp_path, monkeypatch):
    """One MIST config, compiled once: loss goes down; a run SIGKILLed after step 5 and resumed logs the
    same losses as the uninterrupted run; the export is the merged model; a NaN stops the run."""
    import jaxsteer
    import jaxsteer.sharding as M
    from jaxsteer.cla.lora import merge_lora

    cfg = config(tmp_path / "full", MIST)
    seen = []
    result = T.train(cfg, on_step=lambda step, row: seen.append((step, row)))
    rows = T.read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert [step for step, _ in seen] == list(range(1, 7)) and [row for _, row in seen] == rows  # the logged rows
    assert {"loss", "nll", "lr", "grad_norm", "tokens", "tokens_per_s"} <= set(rows[0])
    loss = losses_of(rows)
    assert loss[-1] < loss[0] - 0.05, loss
    assert frozen_unchanged(cfg, result["state"])  # LoRA: the base weights never move
    out = Path(cfg.out)
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 6]
    assert (out / "loss.png").stat().st_size > 0 and (out / "run.json").exists()

    # export: an HF folder whose forward is the merged trained model's
    model = jaxsteer.load_pretrained(out / "export", dtype="float32")
    assert model.tokenizer is not None and model.config.num_layers == 2
    from jaxsteer.checkpoint.hf import source_files

    tok_files = source_files(out / "tokenizer")  # the run's trained tokenizer, copied byte for byte
    assert "tokenizer.json" in tok_files and set(tok_files) <= set(os.listdir(out / "export"))
    assert all((out / "tokenizer" / n).read_bytes() == (out / "export" / n).read_bytes() for n in tok_files)
    params = jax.tree.map(np.asarray, result["state"].params)
    merged = merge_lora(params["base"], params["lora"], cfg.lora.alpha / cfg.lora.rank, xp=np)
    ids = np.asarray([[2, 10, 11, 12, 13]], np.int32)
    a = jaxsteer.forward(model, ids).logits
    b = jaxsteer.forward(jaxsteer.Model(model.config, jax.tree.map(np.asarray, merged)), ids).logits
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)

    # kill -9 after step 5, resume: the same losses as the uninterrupted run
    killed = config(tmp_path / "killed", MIST)
    proc = crash_run(killed, after=5)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [r["step"] for r in T.read_metrics(tmp_path / "killed" / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    assert checkpoint_steps(tmp_path / "killed")[-1] in (2, 4)  # step 4's async save may have been cut short
    T.train(killed, resume=True)
    resumed = T.read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 7))
    np.testing.assert_array_equal(losses_of(resumed), loss)
    np.testing.assert_array_equal(losses_of(resumed, key="grad_norm"), losses_of(rows, key="grad_norm"))
    with pytest.raises(C.ConfigError, match="already holds checkpoints"):
        T.train(killed)  # no silent restart over an existing run
    tokenizer = (tmp_path / "killed" / "tokenizer" / "tokenizer.json").read_bytes()
    with pytest.raises(C.ConfigError, match="--resume: the config differs"):  # refused before the tokenizer is
        T.train(config(tmp_path / "killed", MIST, {"data": {"langs": ["es"]}}), resume=True)  # trained again
    assert (tmp_path / "killed" / "tokenizer" / "tokenizer.json").read_bytes() == tokenizer

    # NaN weights at step 3: stop with one line, keep the step-2 checkpoint, log nothing after step 2
    calls = {"n": 0}
    real = M.put_batch

    def poisoned(batch, mesh):
        calls["n"] += 1
        if calls["n"] == 3:
            batch = {**batch, "weights": np.full_like(batch["weights"], np.nan)}
        return real(batch, mesh)

    monkeypatch.setattr(M, "put_batch", poisoned)
    with pytest.raises(T.TrainingDivergedError, match=r"loss is nan at step 3.*last good checkpoint: step 2"):
        T.train(config(tmp_path / "nan", MIST))
    assert checkpoint_steps(tmp_path / "nan") == [2]
    assert [r["step"] for r in T.read_metrics(tmp_path / "nan" / "metrics.jsonl")] == [1, 2]


def test_midalign_alternates_and_lowers_both_losses(tmp_path):
    cfg = config(tmp_path / "run", MIDALIGN)
    result = T.train(cfg)
    rows = T.read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["kind"] for r in rows] == ["task", "align"] * 3
    task, align = losses_of(rows, "task"), losses_of(rows, "align")
    assert task[-1] < task[0] and align[-1] < align[0], (task, align)
    assert all("info_nce" in r and "align_acc" in r for r in rows if r["kind"] == "align")
    assert np.abs(np.asarray(result["state"].params["lora"]["q_proj"]["b"])).max() > 0

    # the alignment step is a partial forward over blocks 0..l_align: from B = 0, one alignment update
    # moves layer 0's LoRA and leaves layer 1's (above l_align = 0) untouched
    import jaxsteer.sharding as M
    from jaxsteer.cla import data as D

    setup = T.build(cfg)
    assert setup.spec.align_stop == 1
    state = T.init_state(setup)
    tok = D.resolve_tokenizer(cfg, None, tmp_path / "run")
    pipe = D.Pipeline(cfg, {"align": D.align_examples(cfg, tok)}, tok.pad_token_id)
    state, metrics = setup.steps["align"](state, M.put_batch(pipe.next("align"), setup.mesh), None)
    b = np.asarray(state.params["lora"]["up_proj"]["b"])
    assert np.abs(b[0]).max() > 0 and np.abs(b[1]).max() == 0
    assert np.isfinite(float(metrics["info_nce"]))


def test_clo_lowers_loss_with_cached_reference(tmp_path):
    cfg = config(tmp_path / "run", CLO)
    result = T.train(cfg)
    rows = T.read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["dpo"] == pytest.approx(np.log(2), abs=1e-4)  # policy = reference at the first step
    loss, nll = losses_of(rows), losses_of(rows, key="nll")
    assert loss[-1] < loss[0] and nll[-1] < nll[0], (loss, nll)
    # (DPO alone barely moves here: on a random model log π(reply | prompt) hardly depends on the prompt,
    # so the mirrored EN/XX pairs cancel; its sign is pinned in test_cla_losses.)
    ref = np.load(tmp_path / "run" / "reference_logps.npy")
    assert ref.shape == (8, 2) and np.all(ref < 0)  # 4 Korean examples × 2 pairs; (chosen, rejected)
    assert frozen_unchanged(cfg, result["state"])  # attention-only: MLP, norms and embeddings never move


def test_a_restarted_run_never_takes_an_earlier_configs_tokenizer_or_reference_table(tmp_path):
    """A CLO run stopped before its first checkpoint, restarted into the same folder with other languages: its
    reference table (8 rows) and tokenizer were reused, and JAX's gather clamped the new run's indices."""
    out = tmp_path / "run"

    def stop(step, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(config(out, CLO, {"checkpoint": {"every": 50}}), on_step=stop)
    assert np.load(out / "reference_logps.npy").shape == (8, 2) and not checkpoint_steps(out)
    first_vocab = json.loads((out / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    other = config(out, CLO, {"data": {"langs": ["es", "el"]}})
    T.train(other)
    T.train(config(tmp_path / "fresh", CLO, {"data": {"langs": ["es", "el"]}}))
    assert np.load(out / "reference_logps.npy").shape == np.load(tmp_path / "fresh" / "reference_logps.npy").shape
    np.testing.assert_array_equal(
        np.load(out / "reference_logps.npy"), np.load(tmp_path / "fresh" / "reference_logps.npy")
    )
    vocab = json.loads((out / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert vocab == json.loads((tmp_path / "fresh" / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert vocab != first_vocab
    # a start of another config cut short after its tokenizer was saved, before its run.json: the restart of
    # the first config must not take that tokenizer on the first config's run.json
    out2 = tmp_path / "run2"
    b = config(out2, CLO, {"data": {"langs": ["es", "el"]}, "checkpoint": {"every": 50}})
    with pytest.raises(KeyboardInterrupt):
        T.train(b, on_step=stop)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(T, "cached_reference", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        T.train(config(out2, CLO, {"data": {"langs": ["ko"]}}))
    monkey.undo()
    assert not (out2 / "run.json").exists()
    T.train(b)
    assert json.loads((out2 / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"] == vocab
    assert losses_of(T.read_metrics(out / "metrics.jsonl")) == losses_of(
        T.read_metrics(tmp_path / "fresh" / "metrics.jsonl")
    )


def test_the_first_update_of_every_schedule_has_a_non_zero_rate(tmp_path):
    for schedule in C.SCHEDULES:
        cfg = config(tmp_path / schedule, {"optim": {"schedule": schedule, "warmup": 3}, "steps": 10})
        rates = [float(T.make_schedule(cfg)(step)) for step in range(cfg.steps)]
        assert rates[0] > 0, (schedule, rates)
        if schedule == "cosine":  # warmup to lr at the 3rd update, then down to min_lr_ratio·lr at the last
            assert rates[2] == pytest.approx(cfg.optim.lr)
            assert rates[-1] == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio)


def test_pipeline_is_a_pure_function_of_its_position(tmp_path):
    from jaxsteer.cla import data as D

    cfg = config(tmp_path, MIST, {"train": {"batch_size": 3, "micro_batch": 0}, "data": {"length_window": 2}})
    tok = D.train_tokenizer(D.corpus_texts(cfg), 256)
    examples = {"task": D.task_examples(cfg, tok)}
    a, b = D.Pipeline(cfg, examples, 0), D.Pipeline(cfg, examples, 0)
    first = [a.next("task") for _ in range(5)]
    b.restore({"task": 3})
    resumed = b.next("task")
    for key in first[3]:
        np.testing.assert_array_equal(resumed[key], first[3][key])
    batch = first[0]
    assert batch["ids"].shape == (1, 3, 128)  # [accumulation, rows, bucket]
    row = batch["ids"][0, 0]
    np.testing.assert_array_equal(batch["targets"][0, 0, :-1], row[1:])  # position t predicts token t + 1
    n = int(batch["mask"][0, 0].sum())
    assert batch["weights"][0, 0, n - 1 :].sum() == 0 and batch["weights"][0, 0].sum() > 0  # no target past the end
    # every example appears once per epoch (8 examples); a window of 2 batches holds 6 distinct ones
    stream = a.streams["task"]
    assert sorted(stream._flat(0, 8).tolist()) == list(range(8))
    window = np.concatenate([stream.indices(0), stream.indices(1)])
    assert sorted(window.tolist()) == sorted(stream._flat(0, 6).tolist())


@pytest.mark.parametrize(
    "sets,message",
    [
        (["method=sft"], "unknown method 'sft'"),
        (["lora.rank=0"], "lora.rank=0 must be positive"),
        (["method=midalign", "midalign.l_align=9"], "midalign.l_align=9 out of range for a 2-layer model"),
        (["data.langs=[ar]"], "no rows for languages"),
        (["train.micro_batch=3"], "train.batch_size=8 is not a multiple of train.micro_batch=3"),
        (["mesh.data=2"], "does not cover the 1 available device"),
        (["optim.lr=fast"], "optim.lr='fast' must be a number"),
        (["bogus=1"], "unknown config key bogus"),
        (["seed=-1"], "seed=-1 must be in 0"),
        (["steps=.nan"], "steps=nan must be an integer"),
        (["model.tokenizer=/no/such/tokenizer"], "model.tokenizer='/no/such/tokenizer': no such folder"),
        (["model.tokenizer=" + str(FIXTURES)], "no tokenizer could be read there"),
        # found out at the step that drew a long row, after the last step, or as a tokenizers traceback before
        (["data.buckets=[64]"], "data.buckets [64]: the largest must be ≥ data.max_len=128"),
        (["export.dtype=float16"], "export.dtype='float16'; expected one of bfloat16, float32"),
        (["model.tokenizer_vocab=-5"], "model.tokenizer_vocab=-5 must be > 6"),
        # the trained tokenizer was saved into OUT before this refusal
        (["model.changes={vocab_size: 100, num_layers: 2}"], "more than the model's 100"),
    ],
)
def test_bad_configs_fail_in_one_line(sets, message, tmp_path, capsys):
    from jaxsteer.cli import main

    args = ["train", "--config", str(ROOT / "configs" / "cla" / "tiny_mist.yaml"), "--out", str(tmp_path / "x")]
    args += ["--set", f"data.root={FIXTURES}", "--set", "model.changes={vocab_size: 1024, num_layers: 2}"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("jaxsteer train: error:")
    assert not (tmp_path / "x").exists()  # no empty OUT/ or OUT/checkpoints/ from a refused run


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_output_location_that_cannot_be_a_folder_is_refused_before_training(where, tmp_path, capsys):
    from jaxsteer.cli import main

    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    args = ["train", "--config", str(ROOT / "configs" / "cla" / "tiny_mist.yaml"), "--out", str(out)]
    assert main(args + ["--set", f"data.root={FIXTURES}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err, err
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_config_files_parse():
    for name in ("mist", "midalign", "clo", "tiny_mist", "tiny_midalign", "tiny_clo"):
        cfg = C.load(ROOT / "configs" / "cla" / f"{name}.yaml")
        assert cfg.method == name.removeprefix("tiny_")
    full = C.load(ROOT / "configs" / "cla" / "midalign.yaml")
    assert (full.lora.rank, full.lora.alpha, full.midalign.tau, full.optim.schedule) == (8, 16.0, 0.1, "inverse_sqrt")
    assert json.dumps(full.to_dict())  # the run record is JSON


def test_export_takes_the_tokenizer_files_the_run_used(tmp_path):
    """The base folder lends its config values; the tokenizer files are those of the tokenizer trained on."""
    from types import SimpleNamespace as NS

    setup = NS(model_folder="/ckpt/gemma-3-1b-it")
    export_sources = getattr(T.export_sources, "__wrapped__", T.export_sources)  # stubs, not a TrainConfig
    run = tmp_path / "run"
    assert export_sources(NS(model=NS(tokenizer=None)), setup, run) == {"source": "/ckpt/gemma-3-1b-it"}
    assert export_sources(NS(model=NS(tokenizer="train")), setup, run) == {
        "source": "/ckpt/gemma-3-1b-it",
        "tokenizer_source": str(run / "tokenizer"),
    }
    assert export_sources(NS(model=NS(tokenizer=str(tmp_path))), setup, run)["tokenizer_source"] == str(tmp_path)
    hub = export_sources(NS(model=NS(tokenizer="google/gemma-3-1b-it")), setup, run)
    assert hub == {"source": "/ckpt/gemma-3-1b-it", "copy_tokenizer": False}  # saved as loaded, not the base's


def test_a_model_folder_without_weights_is_refused_before_a_tokenizer_is_trained(tmp_path, capsys):
    """With ``model.tokenizer: train`` the tokenizer was trained and saved into OUT before the weights were
    found missing: a refused run left OUT/tokenizer behind."""
    from jaxsteer.cli import main

    nosafe = tmp_path / "nosafe"
    nosafe.mkdir()
    from jaxsteer.config import tiny

    (nosafe / "config.json").write_text(json.dumps(tiny(vocab_size=1024, num_layers=2).to_hf_dict()))
    args = ["train", "--config", str(ROOT / "configs" / "cla" / "tiny_mist.yaml"), "--out", str(tmp_path / "x")]
    args += ["--set", f"data.root={FIXTURES}", "--set", f"model.path={nosafe}", "--set", "model.tokenizer=train"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no .safetensors weights" in err, err
    assert not (tmp_path / "x").exists()


def test_resume_into_a_folder_that_does_not_exist_is_refused(tmp_path, capsys):
    from jaxsteer.cli import main

    args = ["train", "--config", str(ROOT / "configs" / "cla" / "tiny_mist.yaml"), "--out", str(tmp_path / "typo")]
    args += ["--set", f"data.root={FIXTURES}", "--resume"]
    assert main(args) == 2
    assert "--resume: " in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_train_stays_out_of_other_commands_results_and_resume_needs_a_run(tmp_path, capsys):
    from jaxsteer.cli import main

    def train(out, *extra):
        args = ["train", "--config", str(ROOT / "configs" / "cla" / "tiny_mist.yaml"), "--out", str(out)]
        return main([*args, "--set", f"data.root={FIXTURES}", *extra])

    results = tmp_path / "eval_results"
    results.mkdir()
    (results / "manifest.json").write_text("{}")
    assert train(results) == 2 and "holds results of another jaxsteer command" in capsys.readouterr().err
    assert sorted(p.name for p in results.iterdir()) == ["manifest.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(empty, "--resume") == 2 and "holds no training run" in capsys.readouterr().err
    assert not any(empty.iterdir())


def test_a_trained_tokenizer_scores_global_mmlu_letters_as_single_tokens():
    """An export trained with ``model.tokenizer: train`` was refused by ``jaxsteer eval``: " B" was 2 tokens."""
    from jaxsteer.cla.data import train_tokenizer
    from jaxsteer.scoring import single_token_ids

    tok = train_tokenizer(["a short text with A and B in it"] * 3, 300)
    ids = single_token_ids(tok, [" A", " B", " C", " D"])
    assert len(set(ids)) == 4


def test_alignment_pairs_of_one_english_sentence_share_their_source_id(tmp_path):
    """FLORES is parallel: the same English sentence in two languages' pairs gets one id, which InfoNCE uses to
    keep them out of each other's negatives (jaxsteer.cla.losses.false_negatives)."""
    from jaxsteer.cla.data import align_examples, train_tokenizer

    cfg = config(tmp_path / "x", MIDALIGN, {"data": {"langs": ["ko", "zh"]}})
    ex = align_examples(cfg, train_tokenizer(["a b c"] * 3, 300))
    source = ex.extra["source"]
    english = [tuple(r[0].ids) for r in ex.rows]
    n = len(english) // 2
    assert len(source) == len(ex) and n > 1
    assert list(source[:n]) == list(source[n:]) and len(set(source[:n])) == n  # ko's pairs, then zh's: same ids
    assert all((english[i] == english[j]) == (source[i] == source[j]) for i in range(len(ex)) for j in range(len(ex)))
