"""``jaxsteer demo``: the paper's whole pipeline on the model organism, offline, in minutes on a laptop CPU.

1. Write the synthetic world's evaluation and training files (real Global-MMLU/BLEnD/FLORES/OASST schemas).
2. Load the shipped organism (a tiny Gemma-3 pretrained on the world) as the unaligned base.
3. For each seed: align it with MIDALIGN (task LM steps alternating with InfoNCE on parallel sentences) and
   train the LM-only control (the same task steps, no alignment loss).
4. Run the real experiment pipeline (``jaxsteer.study.pipeline``): plain evaluation of every model; EN/LOC
   extraction on Dev1, selection on Dev2, EN-, LOC-steering, SUR and a random same-norm control on the
   base and on each aligned model.
5. Aggregate over seeds (mean ± sample s.d.) into Δ tables, the transfer–localization plane, the S_PER plot
   and a Markdown report whose conclusions are computed from the numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from jaxsteer.data.splits import load_splits
from jaxsteer.organism.model import ASSETS
from jaxsteer.results import atomic_write, provenance, write_json
from jaxsteer.study import metrics
from jaxsteer.study.experiment import ExperimentConfig

STEERED = ("EN", "LOC", "SUR", "random")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str = "jaxsteer-demo"
    model: str = str(ASSETS)  # the organism folder (weights, tokenizer, world.json, pretrain.json)
    seeds: tuple[int, ...] = (0, 1, 2)
    languages: tuple[str, ...] = ("zh", "ko", "es", "id", "el", "fa")
    align_steps: int = 40  # MIDALIGN optimizer steps (half task, half alignment); the control gets the task half
    align_batch: int = 32
    align_lr: float = 1e-3
    l_align: int = 3  # block whose output InfoNCE pools (the organism's middle)
    dev1: int = 40  # BLEnD has 120 items a language in the world: 40 / 40 / 40
    dev2: int = 40
    loc_gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
    en_gamma: float = 2.0
    batch_size: int = 32
    progress: bool = True

    @classmethod
    def fast(cls, out: str, model: str = str(ASSETS)) -> DemoConfig:
        """The CI variant: every stage runs, on two languages, one seed and a few steps."""
        return cls(
            out=out,
            model=model,
            seeds=(0,),
            languages=("zh", "ko"),
            align_steps=4,
            dev1=12,
            dev2=12,
            loc_gammas=(0.0, 2.0),
            progress=False,
        )


def write_demo_world(root: str, organism: str | os.PathLike = ASSETS) -> dict:
    """The world ``organism`` was trained on (its ``world.json``), with its tokenizer and the
    contextualised/decontextualised BLEnD pairs."""
    from jaxsteer.organism import World, blend_items, write_world
    from jaxsteer.organism.model import world_config_of

    world = World(world_config_of(organism))
    counts = write_world(world, root, tokenizer=False)
    tok_dir = os.path.join(root, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for name in os.listdir(organism):
        if name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(os.path.join(organism, name), os.path.join(tok_dir, name))
    for lang in world.languages[1:]:
        country = world.culture(lang).blend_country
        rows = [
            json.dumps(
                {"id": q["id"], "contextualised": q["question"], "decontextualised": q["decontextualized"]},
                ensure_ascii=False,
            )
            for q in blend_items(world, lang)
        ]
        atomic_write(os.path.join(root, "blend", "decontext", f"{country}.jsonl"), "\n".join(rows) + "\n")
    return counts


def cla_config(method: str, world: str, out: str, steps: int, seed: int, cfg: DemoConfig) -> dict:
    return {
        "method": method,
        "steps": steps,
        "seed": seed,
        "out": out,
        "model": {"path": cfg.model, "tokenizer": None},
        "data": {
            "root": world,
            "texts": os.path.join(world, "align_lm.jsonl"),
            "task_oasst": True,
            "langs": list(cfg.languages),
            "chat": False,
            "max_len": 48,
            "buckets": [24, 48],
            "flores_split": "dev",
        },
        "train": {
            "trainable": "full",
            "batch_size": cfg.align_batch,
            "compute_dtype": "float32",
            "remat": None,
            "ce_chunk": 64,
            "impl": "xla",
        },
        "optim": {"lr": cfg.align_lr, "schedule": "constant", "warmup": 0, "weight_decay": 0.0, "clip_norm": 1.0},
        "midalign": {"l_align": cfg.l_align, "tau": 0.1, "align_batch": cfg.align_batch},
        "checkpoint": {"every": max(steps, 1), "keep": 1, "async_save": False},
        "log": {"every": 1, "progress": cfg.progress},
        "export": {"enabled": True, "dtype": "float32"},
    }


def train_models(cfg: DemoConfig, world: str) -> dict[str, str]:
    from jaxsteer.cla import trainer
    from jaxsteer.cla.config import load as load_train_config

    models = {}
    for seed in cfg.seeds:
        for name, method, steps in (
            ("MIDALIGN", "midalign", cfg.align_steps),
            ("LM-only", "mist", max(cfg.align_steps // 2, 1)),
        ):
            out = os.path.join(cfg.out, "cla", f"{name}_s{seed}")
            if os.path.exists(out):
                shutil.rmtree(out)
            print(f"[train] {name} seed {seed}: {steps} steps", flush=True)
            result = trainer.train(load_train_config(None, cla_config(method, world, out, steps, seed, cfg)))
            models[f"{name}_s{seed}"] = result["export"]
    return models


def experiment_config(cfg: DemoConfig, world: str) -> ExperimentConfig:
    return ExperimentConfig(
        model=cfg.model,
        dtype="float32",
        data=world,
        languages=cfg.languages,
        seed=0,
        dev1=cfg.dev1,
        dev2=cfg.dev2,
        allow_small=True,
        chat=False,
        blend_local_instruction=False,
        en_gamma=cfg.en_gamma,
        loc_gammas=cfg.loc_gammas,
        batch_size=cfg.batch_size,
        max_new_tokens=3,
        out=os.path.join(cfg.out, "runs"),
    )


def grouped(names: list[str], runs_dir: str, bench: str) -> dict[str, list]:
    """Result files grouped over seeds: ``MIDALIGN_s0+SUR`` → group ``MIDALIGN+SUR``."""
    groups: dict[str, list] = {}
    for name in names:
        model, _, suffix = name.partition("+")
        group = model.split("_s")[0] + (f"+{suffix}" if suffix else "")
        groups.setdefault(group, []).append(metrics.load_result(os.path.join(runs_dir, f"{name}.{bench}.json")))
    return groups


def single_run_se(runs_dir: str, a: str, b: str, bench: str) -> float:
    """Binomial standard error (points) of the language-averaged accuracy difference ``a − b`` of two
    single runs on the same test items (unpaired, so conservative): the noise of a row without seeds."""
    acc_a = metrics.load_result(os.path.join(runs_dir, f"{a}.{bench}.json")).scores
    acc_b = metrics.load_result(os.path.join(runs_dir, f"{b}.{bench}.json")).scores
    splits = load_splits(os.path.join(runs_dir, f"splits_{bench}.json"))
    var = 0.0
    for lang in acc_a:
        pa, pb, n = acc_a[lang] / 100, acc_b[lang] / 100, max(len(splits[lang].test), 1)
        var += (pa * (1 - pa) + pb * (1 - pb)) / n
    return 100.0 * float(np.sqrt(var)) / max(len(acc_a), 1)


def paired_spread(runs_dir: str, a: str, b: str, bench: str, seeds) -> float | None:
    """S.d. over seeds of the per-seed difference ``a − b`` of one aligned model's runs (``MIDALIGN+LOC`` minus
    ``MIDALIGN``: the files ``MIDALIGN_s{seed}+LOC`` and ``MIDALIGN_s{seed}``), language-averaged: the spread of
    a difference between two runs of the same seed, which the two rows' own spreads overstate or understate.
    None with fewer than two seeds (no spread to judge by)."""

    def name(group: str, seed: int) -> str:
        model, _, suffix = group.partition("+")
        return f"{model}_s{seed}" + (f"+{suffix}" if suffix else "")

    diffs = []
    for seed in seeds:
        acc = [metrics.load_result(os.path.join(runs_dir, f"{name(g, seed)}.{bench}.json")).scores for g in (a, b)]
        diffs.append(float(np.mean([acc[0][lang] - acc[1][lang] for lang in acc[1]])))
    return metrics.mean_spread(diffs)[1] if len(diffs) > 1 else None


def conclusions(points: dict[str, metrics.PlanePoint], runs_dir: str | None = None, seeds=None) -> list[str]:
    """Sentences that follow from the numbers. Over seeds, a difference within one s.d. is reported as none (the
    s.d. of the per-seed difference where both sides are runs of the same seeds); for single runs (steering the
    base model), within two binomial standard errors over the test items. With one seed nothing is judged."""

    def moved(value, err, what, single=False):
        if value is None:
            return f"{what}: not measured"
        if err is None:  # one seed: a spread of 0.0 would count every difference as real
            return f"{what}: {value:+.1f} points (one seed: no spread over seeds to judge it by)"
        spread = f"± {err:.1f} {'s.e. over items' if single else 's.d. over seeds'}"
        if abs(value) <= max(2 * err if single else err, 1e-9):
            return f"{what}: no change beyond the {'item noise' if single else 'seed spread'} ({value:+.1f} {spread})"
        return f"{what}: {'raised' if value > 0 else 'lowered'} by {abs(value):.1f} points ({spread})"

    one_seed = seeds is not None and len(seeds) < 2

    def noise(a, b, bench, err_a, err_b):
        # rows of the base model are single deterministic runs (aligned models have per-seed files)
        if runs_dir is not None and a.split("+")[0] == b.split("+")[0] == "base":
            return single_run_se(runs_dir, a, b, bench), True
        if one_seed:
            return None, False
        if runs_dir is not None and seeds is not None and a.split("+")[0] == b.split("+")[0]:
            return paired_spread(runs_dir, a, b, bench, seeds), False
        return float(np.hypot(err_a or 0, err_b or 0)), False

    out = []
    cla, ctrl = points.get("MIDALIGN"), points.get("LM-only")
    if cla:
        out.append(moved(cla.dx, None if one_seed else cla.dx_err, "MIDALIGN vs base, Global-MMLU (transfer)"))
        out.append(moved(cla.dy, None if one_seed else cla.dy_err, "MIDALIGN vs base, BLEnD (localization)"))
    if cla and ctrl:
        gap = cla.dx - ctrl.dx
        err = None if one_seed else float(np.hypot(cla.dx_err or 0, ctrl.dx_err or 0))
        out.append(moved(gap, err, "MIDALIGN vs its LM-only control, Global-MMLU (what alignment adds)"))
        gap = cla.dy - ctrl.dy
        err = None if one_seed else float(np.hypot(cla.dy_err or 0, ctrl.dy_err or 0))
        out.append(moved(gap, err, "MIDALIGN vs its LM-only control, BLEnD (erasure due to alignment)"))
    for model in ("base", "MIDALIGN"):
        plain = points.get(model) if model != "base" else metrics.PlanePoint("base", 0.0, 0.0, 0.0, 0.0)
        loc, sur = points.get(f"{model}+LOC"), points.get(f"{model}+SUR")
        en, rnd = points.get(f"{model}+EN"), points.get(f"{model}+random")
        if plain and loc:
            err, single = noise(f"{model}+LOC", model, "blend", loc.dy_err, 0.0)
            out.append(moved(loc.dy - plain.dy, err, f"LOC-steering on {model}, BLEnD", single))
        if en and rnd:
            err, single = noise(f"{model}+EN", f"{model}+random", "gmmlu", en.dx_err, rnd.dx_err)
            what = f"EN-steering on {model} vs a random same-norm vector, Global-MMLU"
            out.append(moved(en.dx - rnd.dx, err, what, single))
        if plain and en:
            err, single = noise(f"{model}+EN", model, "blend", en.dy_err, 0.0)
            out.append(
                moved(en.dy - plain.dy, err, f"EN-steering on {model}, BLEnD (what the EN vector costs)", single)
            )
        if sur and rnd:
            for axis, bench, name in (("dx", "gmmlu", "Global-MMLU"), ("dy", "blend", "BLEnD")):
                err_s, err_r = getattr(sur, f"{axis}_err"), getattr(rnd, f"{axis}_err")
                err, single = noise(f"{model}+SUR", f"{model}+random", bench, err_s, err_r)
                what = f"SUR on {model} vs the random control (same norms, layers, γ), {name}"
                out.append(moved(getattr(sur, axis) - getattr(rnd, axis), err, what, single))
        if sur:
            ex, _ = noise(f"{model}+SUR", "base", "gmmlu", sur.dx_err, 0.0)
            ey, _ = noise(f"{model}+SUR", "base", "blend", sur.dy_err, 0.0)
            shown = lambda v, e: f"{v:+.1f}" + ("" if e is None else f" ± {e:.1f}")  # noqa: E731
            out.append(
                f"SUR on {model}: Δ vs base = ({shown(sur.dx, ex)}, {shown(sur.dy, ey)}) "
                f"→ quadrant '{sur.quadrant}' (by sign)"
            )
    return out


def run_demo(cfg: DemoConfig) -> dict:
    from jaxsteer.checkpoint.hf import load_pretrained
    from jaxsteer.study.compare import format_tables, write_comparison
    from jaxsteer.study.pipeline import run_experiment, sper_outputs

    t0 = time.time()
    os.makedirs(cfg.out, exist_ok=True)
    world = os.path.join(cfg.out, "world")
    print(f"[1/5] writing the synthetic world to {world}", flush=True)
    write_demo_world(world, cfg.model)
    print("[2/5] training MIDALIGN and its LM-only control from the shipped organism", flush=True)
    trained = train_models(cfg, world)
    exp = experiment_config(cfg, world)
    models = {"base": load_pretrained(cfg.model, dtype="float32"), **trained}
    steer = ("base", *[m for m in trained if m.startswith("MIDALIGN")])
    print("[3/5] evaluating, extracting, selecting and steering (the real pipeline)", flush=True)
    # the demo owns its folder: results of other demo settings there are moved aside (runs/replaced-DATE/)
    out = run_experiment(exp, models, steer, exp.out, progress=cfg.progress, overwrite=True,
                         redo="running `jaxsteer demo` again (it starts the experiment over)")  # fmt: skip
    print("[4/5] aggregating over seeds", flush=True)
    names = list(out["results"])
    runs = {bench: grouped(names, exp.out, bench) for bench in ("gmmlu", "blend")}
    comparison = write_comparison(
        cfg.out,
        runs,
        "base",
        cfg.languages,
        title="Organism: transfer–localization plane (Δ vs base, mean ± s.d. over seeds)",
        command="jaxsteer demo",
    )
    tables, plane = comparison["tables"], comparison["plane"]
    points = {p.method: p for p in comparison["points"]}
    sper = sper_outputs(cfg.out, out["reports"])
    base_acc = {b: metrics.load_result(os.path.join(exp.out, f"base.{b}.json")).scores for b in ("gmmlu", "blend")}
    report = write_report(cfg, tables, points, base_acc, time.time() - t0)
    write_json(
        os.path.join(cfg.out, "demo.json"),
        {
            "config": dataclasses.asdict(cfg),
            "base_accuracy": base_acc,
            "points": {k: dataclasses.asdict(v) | {"quadrant": v.quadrant} for k, v in points.items()},
            "minutes": (time.time() - t0) / 60,
            "provenance": provenance(models["base"], seed=0, command="jaxsteer demo"),
        },
    )
    print("[5/5] done", flush=True)
    print(format_tables(tables))
    print(f"report: {report}\nplane: {plane[0]}\nS_PER: {sper[0] if sper else '-'}\nall files: {cfg.out}/")
    return {"tables": tables, "points": points, "report": report}


def write_report(cfg: DemoConfig, tables, points, base_acc, seconds: float) -> str:
    lines = [
        "# jaxsteer demo: cultural erasure in a model organism",
        "",
        f"Seeds {list(cfg.seeds)}, languages {', '.join(cfg.languages)}, {cfg.align_steps} MIDALIGN steps; "
        f"ran in {seconds / 60:.1f} min. Produced by `jaxsteer demo` (jaxsteer.organism.demo).",
        "",
        "Base organism accuracy (%): Global-MMLU (English-only facts asked in XX) "
        + ", ".join(f"{k} {v:.1f}" for k, v in base_acc["gmmlu"].items())
        + "; BLEnD (no-context cultural questions) "
        + ", ".join(f"{k} {v:.1f}" for k, v in base_acc["blend"].items())
        + ".",
        "",
        "## Δ Global-MMLU (transfer), points vs base",
        "",
        tables["gmmlu"].to_markdown(),
        "",
        "## Δ BLEnD (localization), points vs base",
        "",
        tables["blend"].to_markdown(),
        "",
        "## What the organism shows (computed from the numbers above)",
        "",
        *caveats(base_acc, assets_info(cfg.model)),
        *[f"- {c}" for c in conclusions(points, os.path.join(cfg.out, "runs"), cfg.seeds)],
        "",
        "Files: `plane.png` (the transfer–localization plane), `sper_by_layer.png` (S_PER(EN, LOC) by layer), "
        "`runs/` (every per-language result file, vectors, plans, splits), `cla/` (training logs and loss plots).",
    ]
    return atomic_write(os.path.join(cfg.out, "report.md"), "\n".join(lines) + "\n")


def caveats(base_acc: dict, info: dict) -> list[str]:
    """Say when the numbers cannot carry a conclusion: an organism near chance, single-run base rows."""
    out = []
    trained = info.get("english_fact_accuracy")
    if trained is not None and trained < 50.0:
        out.append(
            f"- **Caveat: the shipped organism answers the English facts it was trained on at {trained:.1f} % "
            "(chance 25 %): it has not learned the world, so the effects below are at noise level.** "
            "A longer `jaxsteer demo --retrain --steps N` (or a smaller world) is needed."
        )
    gm = float(np.mean(list(base_acc["gmmlu"].values())))
    if gm < 40.0:
        out.append(f"- Base Global-MMLU accuracy is {gm:.1f} % (chance 25 %): little transfer headroom to measure.")
    out.append(
        "- Rows of the base model come from one deterministic run (± n/a: no spread over seeds; conclusions about "
        "them use the binomial s.e. over the test items); aligned-model rows are mean ± s.d. over the alignment seeds."
    )
    return out


def assets_info(organism: str | os.PathLike = ASSETS) -> dict:
    """The organism folder's ``pretrain.json`` (what produced its weights), or ``{}``."""
    path = Path(organism) / "pretrain.json"
    return json.loads(path.read_text()) if path.is_file() else {}
