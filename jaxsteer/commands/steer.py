"""``jaxsteer steer``: surgical steering (EN at l1 + LOC at l2) — select on Dev2, then generate or evaluate."""

from __future__ import annotations

import dataclasses
import os

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, experiment_config


def register(sub) -> None:
    p = sub.add_parser("steer", help="select SUR layers/γ on Dev2; then generate from prompts or evaluate on test")
    add_experiment_args(p)
    p.add_argument("--en", required=True, help="EN vector file")
    p.add_argument("--loc", help="LOC vector file (omit for EN-only steering)")
    p.add_argument("--prompt", action="append", help="generate from this prompt with the selected plan")
    p.add_argument(
        "--no-select", action="store_true", help="use the config's layers and γ (loc γ: first grid value > 0)"
    )
    p.add_argument("--evaluate", action="store_true", help="evaluate the plan on the test split")
    p.add_argument("--force", action="store_true", help="apply vectors made for another config hash")
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.commands._common import claim_results, load_model, note_other_languages
    from jaxsteer.model.model import check_new_tokens
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.results import provenance, write_json
    from jaxsteer.steering.vectors_io import check_compatible, check_nonzero_at, load_vectors
    from jaxsteer.study.evaluate import eval_file_names, evaluate, write_eval
    from jaxsteer.study.experiment import Benchmarks
    from jaxsteer.study.surgical import candidate_layers, plan_surgical
    from jaxsteer.tokens import check_texts, encode_batch

    cfg, extra = experiment_config(args)
    check_output_folder(cfg.out)
    prompts = check_texts(args.prompt, "--prompt") if args.prompt else None
    model = load_model(cfg)
    encoded = encode_batch(model.tokenizer, prompts, chat=cfg.chat) if prompts else None
    check_new_tokens(model.config, encoded[0].shape[1] if encoded else 1, cfg.max_new_tokens)
    v_en = load_vectors(args.en)
    check_compatible(v_en, model.config, force=args.force)
    check_nonzero_at(v_en, candidate_layers(cfg, model.config.num_layers, "EN"), args.en)
    note_other_languages(v_en, args.en, cfg.languages)
    v_loc = load_vectors(args.loc) if args.loc else None
    if v_loc is not None:
        check_compatible(v_loc, model.config, force=args.force)
        check_nonzero_at(v_loc, candidate_layers(cfg, model.config.num_layers, "LOC"), args.loc)
        note_other_languages(v_loc, args.loc, cfg.languages)
    method = "SUR" if v_loc is not None else "EN"
    planned = ["plan.json", *(eval_file_names(method) if args.evaluate else [])]
    folder = claim_results(cfg.out, model, cfg.seed, args.overwrite, planned)
    bench = Benchmarks(cfg)
    plans = {}
    for lang in cfg.languages:
        plans[lang] = plan_surgical(model, bench, lang, v_en, v_loc, not args.quiet, select=not args.no_select)
        p = plans[lang]
        print(f"{lang}: EN layer {p.en_layer} γ={p.en_gamma}; LOC layer {p.loc_layer} γ={p.loc_gamma}")
    which = "sur" if v_loc is not None else "en"
    loc = v_loc if v_loc is not None else v_en
    folder.set_aside_earlier()
    plan_path = write_json(
        os.path.join(cfg.out, "plan.json"),
        {
            "plans": {lang: dataclasses.asdict(p) for lang, p in plans.items()},
            "en": args.en,
            "loc": args.loc,
            "provenance": provenance(model, seed=cfg.seed, command="jaxsteer steer"),
        },
    )
    # one stage for the plan and its evaluation: an --overwrite that replaces the plan sets aside the results
    # the earlier plan produced (an EN-only call's EN.* beside a new SUR plan.json would describe another plan)
    stage = f"steer:{method}"
    folder.finish(stage, [plan_path])
    if encoded:
        from jaxsteer.model.decode import generate
        from jaxsteer.tokens import decode_new

        steer = plans[cfg.languages[0]].steering(model.config, v_en, loc, which)
        ids, mask = encoded
        for prompt, steered in (("plain", None), ("steered", steer)):
            tokens = generate(model, ids, cfg.max_new_tokens, mask, steering=steered)
            for text, out in zip(prompts, decode_new(model.tokenizer, tokens, model.config)):
                print(f"[{prompt}] {text!r} -> {out!r}")
    if args.evaluate:
        result = evaluate(
            model,
            bench,
            method,
            lambda lang: plans[lang].steering(model.config, v_en, loc, which),
            "test",
            not args.quiet,
        )
        # the base identity eval and run record, so plane compares steer's results with theirs
        paths = write_eval(
            result, cfg.out, model, cfg, (extra.get("models") or {}).get("base"), command="jaxsteer steer"
        )
        folder.finish(stage, [plan_path, *paths])
        for path in paths:
            print(f"wrote {path}")
    print(f"wrote {os.path.join(cfg.out, 'plan.json')}")
    return 0
