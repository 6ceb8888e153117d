"""The naive baseline of ``bench/pipeline.py``: what a user writes with HF transformers (run in a child process).

Same weights as jaxsteer's subset run (``pipeline_world.weight_bits``), bf16, SDPA attention, on the GPU
when there is one. The timed work is the subset:

* Global-MMLU: one forward per batch of 32 left-padded prompts (``logits_to_keep=1``, positions from the
  mask), the argmax of the four letters' logits;
* LOC selection: for each γ of the grid, a forward hook on ``model.model.layers[l]`` adding γ·v to the
  block's output, then ``model.generate(max_new_tokens=24, do_sample=False)`` batch by batch, decoding,
  and jaxsteer's BLEnD scorer on the answers — one γ at a time.

Prompts, items and scoring are jaxsteer's, so both sides do the same task on the same inputs.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pipeline_world as world
import torch


def build_model(spec: dict, config, device: str):
    """``Gemma3ForCausalLM`` of jaxsteer's config, its weights overwritten with the shared ones."""
    import transformers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from jaxsteer.checkpoint.hf import hf_name

    transformers.logging.set_verbosity_error()
    fields = {k: v for k, v in config.to_hf_dict().items() if k not in ("architectures", "model_type", "torch_dtype")}
    hf_config = Gemma3TextConfig(**fields)
    hf_config._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16 if device == "cuda" else torch.float32)  # CPU bf16 matmuls crawl
    with torch.device(device):
        model = Gemma3ForCausalLM(hf_config)
    model.eval()
    params = dict(model.named_parameters())
    copied = 0
    with ThreadPoolExecutor(min(32, os.cpu_count() or 4)) as pool, torch.no_grad():
        for key, layer, shape, is_norm in world.weight_tensors(config):
            bits = world.host_tensor(spec["seed"], key, layer, shape, is_norm, pool)
            value = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
            params[hf_name(key, layer)].copy_(value)  # copy_ converts to fp32 on the CPU (smoke runs)
            copied += 1
        if (
            "lm_head.weight" in params
            and params["lm_head.weight"].data_ptr() != params[hf_name("embed", None)].data_ptr()
        ):
            params["lm_head.weight"].copy_(params[hf_name("embed", None)])  # untied copy: keep the same head
    missing = len([n for n in params if n != "lm_head.weight"]) - copied
    if missing:
        raise SystemExit(f"[hf] {missing} HF parameters had no jaxsteer counterpart")
    return model


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def _dump(path: str, result: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def run_hf(spec: dict, out_path: str) -> None:
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)  # smoke runs: a tiny model, and OpenMP threads that spin on a shared CPU
    result = {"part": "hf", "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "transformers": transformers.__version__, "done": False}  # fmt: skip
    tok = world.load_tokenizer(spec["tokenizer"])
    tok.padding_side = "left"
    config = world.model_config(spec["model"], len(tok))
    t = time.perf_counter()
    model = build_model(spec, config, device)
    _sync(device)
    result["build_s"] = time.perf_counter() - t
    print(f"[hf] model built on {device} in {result['build_s']:.1f} s", flush=True)
    bench = world.subset_bench(spec)
    t = time.perf_counter()
    result["gmmlu_accuracy"], result["items_gmmlu"] = gmmlu(model, tok, bench, spec, device)
    result["gmmlu_s"] = time.perf_counter() - t
    print(f"[hf] Global-MMLU {result['items_gmmlu']} items: {result['gmmlu_s']:.1f} s", flush=True)
    _dump(out_path, result)
    t = time.perf_counter()
    loc_selection(model, tok, bench, spec, config, device, result, lambda: _dump(out_path, result))
    result["loc_selection_s"] = time.perf_counter() - t
    result["total_s"] = result["gmmlu_s"] + result["loc_selection_s"]
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    result["done"] = True
    _dump(out_path, result)
    print(f"[hf] naive total {result['total_s']:.1f} s (Global-MMLU {result['gmmlu_accuracy']:.1f} %)", flush=True)


def gmmlu(model, tok, bench, spec: dict, device: str) -> tuple[float, int]:
    """One forward per batch of left-padded prompts; the argmax of the four letters' logits at the end."""
    from jaxsteer.data import prompts

    lang, batch = spec["subset"]["lang"], spec["batch"]
    reqs = [prompts.mc_prompt(q, True, tok) for q in bench.gmmlu(lang, "test")]
    letters = [tok(c, add_special_tokens=False)["input_ids"][0] for c in reqs[0].continuations]
    correct = 0
    with torch.inference_mode():
        for lo in range(0, len(reqs), batch):
            part = reqs[lo : lo + batch]
            enc = tok([r.context for r in part], add_special_tokens=False, padding=True, return_tensors="pt").to(device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding keeps positions
            logits = model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1]
            pred = logits[:, letters].argmax(-1).tolist()
            correct += sum(int(p == r.answer) for p, r in zip(pred, part))
    _sync(device)
    return 100.0 * correct / len(reqs), len(reqs)


def loc_selection(model, tok, bench, spec: dict, config, device: str, result: dict, dump) -> None:
    """One γ at a time: a hook adding γ·v at the LOC layer, ``generate`` batch by batch, decode, score."""
    from jaxsteer.study import metrics

    cfg, lang, batch = bench.cfg, spec["subset"]["lang"], spec["batch"]
    loc_layer = cfg.layers_for(config.num_layers)[1]
    v = torch.from_numpy(world.random_vector(config, spec["seed"])[loc_layer]).to(device)
    items = bench.blend(lang, "dev2")
    texts = [bench.blend_prompt(it.decontextualised, lang, tok) for it in items]
    by_id = {it.question.id: t for it, t in zip(items, texts)}
    result["items_blend"], result["layer"], result["loc_dev2_blend"] = len(items), loc_layer, {}
    new_tokens, t = [], time.perf_counter()
    for gamma in cfg.loc_gammas:
        delta = (gamma * v).to(torch.get_default_dtype())

        def hook(module, inputs, output, delta=delta):
            if isinstance(output, tuple):
                return (output[0] + delta, *output[1:])
            return output + delta

        handle = model.model.layers[loc_layer].register_forward_hook(hook)
        answers = []
        with torch.inference_mode():
            for lo in range(0, len(texts), batch):
                enc = tok(texts[lo : lo + batch], add_special_tokens=False, padding=True, return_tensors="pt").to(
                    device
                )
                out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)  # fmt: skip
                new = out[:, enc["input_ids"].shape[1] :]
                new_tokens.append(new.shape[1])
                answers += tok.batch_decode(new, skip_special_tokens=True)
        handle.remove()
        responses = {it.question.id: a for it, a in zip(items, answers)}
        acc = metrics.blend_accuracy(responses, [it.question for it in items], cfg.blend_match, by_id).accuracy
        result["loc_dev2_blend"][f"layer={loc_layer},gamma={gamma}"] = acc
        result["mean_generated_tokens"] = float(np.mean(new_tokens))
        dump()
        print(f"[hf]   γ={gamma:g}: Dev2 BLEnD {acc:.1f} ({time.perf_counter() - t:.1f} s so far)", flush=True)
    _sync(device)
