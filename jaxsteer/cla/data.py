"""The deterministic CLA data pipeline: tokenised examples, length buckets, seeded shuffles, a resumable position.

Three example kinds, each a stream of fixed-shape host batches ``[A, M, T]`` (``A`` accumulation steps of
``M`` rows, ``T`` a bucket length, so each bucket compiles once):

* ``task`` — MIST (and MIDALIGN's task step): OpenAssistantXX prompt → response, loss on response tokens;
* ``align`` — MIDALIGN's contrastive step: FLORES (English, XX) pairs, rows ``[EN_0..EN_M, XX_0..XX_M]``;
* ``clo`` — CLO preference pairs, rows ``[chosen_0..chosen_M, rejected_0..rejected_M]``.

Batch ``k`` of a stream is a pure function of (seed, stream, k): the stream is the concatenation of
seeded per-epoch permutations, optionally sorted by length inside windows of ``length_window`` batches
(whose order is then shuffled). The position is therefore one integer per stream, saved in every
checkpoint, and a resumed run sees exactly the batches it would have seen. Rows are right-padded; the
model's positions count real tokens, so padding never shifts them.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxsteer.cla.config import TrainConfig
from jaxsteer.data.files import read_text
from jaxsteer.errors import ConfigError, DataError

STREAMS = {"task": 0, "align": 1, "clo": 2}


# --- tokenizer for tests and tiny runs --------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """A small BPE ``PreTrainedTokenizerFast`` with Gemma's special ids and chat template, and the Global-MMLU
    letters " A" … " D" as single tokens.

    ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<start_of_turn>`` 4, ``<end_of_turn>`` 5; the
    pre-tokenizer and template are those of :mod:`jaxsteer.tokens`, the model is BPE over
    characters so scripts without spaces (Chinese) still split into many tokens. Deterministic: the same
    texts give the same ids in every process.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from jaxsteer import tokens as T

    tok = Tokenizer(models.BPE(unk_token=T.UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(T.SPLIT_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(T.SPECIAL_TOKENS), show_progress=False
    )
    # " A" … " D" one token each: a model trained with this tokenizer is scored on Global-MMLU by those letters
    tok.train_from_iterator(T.with_single_tokens(list(dict.fromkeys(texts))), trainer)
    tok.post_processor = T.bos_post_processor(tok.token_to_id(T.BOS))  # tokenizer(text) adds <bos>, as Gemma's
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=T.BOS, eos_token=T.EOS, pad_token=T.PAD, unk_token=T.UNK,
        additional_special_tokens=list(T.SPECIAL_TOKENS[4:]), clean_up_tokenization_spaces=False,
    )  # fmt: skip
    fast.chat_template = T.CHAT_TEMPLATE
    return fast


# --- examples ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    """One token row and the weight of each *token* as a prediction target (1 = response token)."""

    ids: np.ndarray
    target: np.ndarray


@dataclasses.dataclass
class Examples:
    """A stream's examples: ``rows[i]`` are the rows of example ``i`` (1 for task, 2 for align/clo)."""

    rows: list[tuple[Row, ...]]
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # per-example values (clo: nll)

    def __len__(self) -> int:
        return len(self.rows)

    def length(self, i: int) -> int:
        return max(len(r.ids) for r in self.rows[i])


def _end_id(tokenizer) -> int:
    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    return int(eot) if eot is not None and eot != tokenizer.unk_token_id else int(tokenizer.eos_token_id)


def encode_sft(tokenizer, prompt: str, response: str, *, chat: bool, max_len: int) -> Row | None:
    """Prompt (chat-templated, with ``<bos>``) then response and its end token; ``None`` if the prompt fills max_len."""
    from jaxsteer.tokens import apply_chat

    if chat:
        p = tokenizer(apply_chat(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        end = _end_id(tokenizer)
    else:
        p = [tokenizer.bos_token_id, *tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]]
        end = int(tokenizer.eos_token_id)
    r = [*tokenizer(response, add_special_tokens=False)["input_ids"], end]
    if len(p) >= max_len - 1:
        return None
    r = r[: max_len - len(p)]
    ids = np.asarray(p + r, np.int32)
    return Row(ids, np.concatenate([np.zeros(len(p), np.float32), np.ones(len(r), np.float32)]))


def encode_text(tokenizer, text: str, max_len: int) -> Row:
    """``<bos>`` + a plain sentence (the alignment step pools it; no target)."""
    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]][:max_len]
    return Row(np.asarray(ids, np.int32), np.zeros(len(ids), np.float32))


def read_texts(path: str) -> list[str]:
    """``{"text": ...}`` rows of a JSONL file (the organism's corpora)."""
    import json

    if not os.path.isfile(path):
        raise DataError(f"no texts file at {path}")
    out = []
    for n, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
        if line.strip():
            try:
                out.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path} line {n}: expected a JSON object with a 'text' field") from None
    return out


def encode_lm(tokenizer, text: str, max_len: int) -> Row:
    """``<bos>`` + text + ``<eos>``, every token after ``<bos>`` a target (plain language modelling)."""
    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    ids = ids[:max_len]
    target = np.ones(len(ids), np.float32)
    target[0] = 0.0
    return Row(np.asarray(ids, np.int32), target)


def _require(examples: Examples, what: str) -> Examples:
    if not len(examples):
        raise DataError(f"empty dataset: no {what} example left (check data.langs, data paths and data.max_len)")
    return examples


def task_examples(cfg: TrainConfig, tokenizer) -> Examples:
    from jaxsteer.data.oasst import load_oasst_xx

    d = cfg.data
    lm_rows = [encode_lm(tokenizer, t, d.max_len) for t in read_texts(d.texts)] if d.texts else []
    if not d.task_oasst:
        return _require(Examples([(r,) for r in lm_rows]), f"task (texts of {d.texts})")
    pairs = load_oasst_xx(d.oasst or d.root, d.langs)
    texts = [(p.prompt, p.response) for p in pairs]
    if d.include_english:  # the English originals, once per source example
        seen = {}
        for p in pairs:
            if p.prompt_en and p.response_en:
                seen.setdefault(p.id, (p.prompt_en, p.response_en))
        texts += list(seen.values())
    rows = [encode_sft(tokenizer, q, a, chat=d.chat, max_len=d.max_len) for q, a in texts]
    rows = [r for r in rows if r is not None] + lm_rows
    return _require(Examples([(r,) for r in rows]), "task (OpenAssistantXX)")


def align_examples(cfg: TrainConfig, tokenizer) -> Examples:
    from jaxsteer.data.flores import load_flores_pairs

    d = cfg.data
    rows, sources, ids = [], [], {}
    for lang in d.langs:
        for p in load_flores_pairs(d.flores or d.root, "en", lang, d.flores_split):
            rows.append((encode_text(tokenizer, p.src, d.max_len), encode_text(tokenizer, p.tgt, d.max_len)))
            sources.append(ids.setdefault(p.src, len(ids)))  # one id per English sentence: not its own negative
    return _require(Examples(rows, {"source": np.asarray(sources, np.int32)}), "alignment (FLORES)")


def clo_examples(cfg: TrainConfig, tokenizer) -> Examples:
    """Two preference pairs per translated example: EN prompt prefers the EN reply, XX prompt the XX reply."""
    from jaxsteer.data.oasst import load_oasst_xx

    d = cfg.data
    rows, nll = [], []
    for p in load_oasst_xx(d.oasst or d.root, d.langs):
        if p.lang == "en" or not (p.prompt_en and p.response_en):
            continue
        for prompt, chosen, rejected, target in (
            (p.prompt_en, p.response_en, p.response, 0.0),
            (p.prompt, p.response, p.response_en, 1.0),  # the target-language pair carries the NLL term
        ):
            c = encode_sft(tokenizer, prompt, chosen, chat=d.chat, max_len=d.max_len)
            r = encode_sft(tokenizer, prompt, rejected, chat=d.chat, max_len=d.max_len)
            if c is not None and r is not None:
                rows.append((c, r))
                nll.append(target)
    return _require(Examples(rows, {"nll": np.asarray(nll, np.float32)}), "CLO preference")


def corpus_texts(cfg: TrainConfig) -> list[str]:
    """Every text a run may tokenise, in a fixed order (the training set of a trained tokenizer)."""
    from jaxsteer.data.flores import load_flores_pairs
    from jaxsteer.data.oasst import load_oasst_xx

    d = cfg.data
    out = read_texts(d.texts) if d.texts else []
    for p in load_oasst_xx(d.oasst or d.root, d.langs) if d.task_oasst else []:
        out += [p.prompt, p.response, p.prompt_en, p.response_en]
    if cfg.method == "midalign":
        for lang in d.langs:
            out += [
                t for p in load_flores_pairs(d.flores or d.root, "en", lang, d.flores_split) for t in (p.src, p.tgt)
            ]
    return [t for t in out if t]


def resolve_tokenizer(
    cfg: TrainConfig, model_tokenizer, run_dir: str | os.PathLike, vocab_size: int | None = None, reuse: bool = True
):
    """The run's tokenizer: a folder, the model's own, or ``"train"`` (trained once, then read from the run).

    ``vocab_size``: the model's, checked before a trained tokenizer is saved (a refused run writes nothing);
    ``reuse``: read ``OUT/tokenizer`` if there (a resumed run keeps its ids) — False when it may be another
    configuration's (a run stopped before its first checkpoint, restarted with other data: trained again)."""
    spec = cfg.model.tokenizer
    if spec is None:
        if model_tokenizer is None:
            raise ConfigError("the model has no tokenizer files; set model.tokenizer to a folder (or 'train')")
        return model_tokenizer
    from transformers import PreTrainedTokenizerFast

    if spec != "train":
        from transformers import AutoTokenizer

        from jaxsteer.data.files import is_hub_id

        if not os.path.isdir(spec) and not is_hub_id(spec):
            raise ConfigError(f"model.tokenizer={spec!r}: no such folder (a tokenizer folder, a hub id, or 'train')")
        try:
            return AutoTokenizer.from_pretrained(spec, trust_remote_code=False)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"model.tokenizer={spec!r}: no tokenizer could be read there ({first})") from None
    folder = Path(run_dir) / "tokenizer"
    if reuse and (folder / "tokenizer.json").is_file():  # a resumed run keeps the ids it started with
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    tok = train_tokenizer(corpus_texts(cfg), cfg.model.tokenizer_vocab)
    check_tokenizer_fits(tok, vocab_size)
    tok.save_pretrained(str(folder))
    return tok


def check_tokenizer_fits(tokenizer, vocab_size: int | None) -> None:
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's {vocab_size}")


# --- batches ----------------------------------------------------------------------------------------
def buckets(cfg: TrainConfig) -> tuple[int, ...]:
    if cfg.data.buckets:
        return tuple(sorted(cfg.data.buckets))
    out, b = [], 64
    while b < cfg.data.max_len:
        out.append(b)
        b *= 2
    return (*out, cfg.data.max_len)


def bucket_length(n: int, sizes: Sequence[int]) -> int:
    for s in sizes:
        if s >= n:
            return s
    raise DataError(f"a sequence of {n} tokens exceeds the largest bucket {sizes[-1]} (raise data.buckets)")


def collate(seqs: Sequence[Row], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded ``ids``/``mask`` and the shifted ``targets``/``weights`` (what position t predicts)."""
    n = len(seqs)
    ids = np.full((n, length), pad_id, np.int32)
    mask = np.zeros((n, length), np.int32)
    weights = np.zeros((n, length), np.float32)
    for i, s in enumerate(seqs):
        k = len(s.ids)
        ids[i, :k], mask[i, :k] = s.ids, 1
        weights[i, : k - 1] = s.target[1:]  # position t is scored on token t + 1
    targets = np.concatenate([ids[:, 1:], np.full((n, 1), pad_id, np.int32)], axis=1)
    return {"ids": ids, "mask": mask, "targets": targets, "weights": weights}


class Stream:
    """Batch ``k`` → example indices, from seeded per-epoch permutations (a pure function of k)."""

    def __init__(self, examples: Examples, batch: int, micro: int, seed: int, stream: str, window: int = 1):
        self.examples, self.batch, self.micro, self.window = examples, batch, micro, window
        self.seed = [int(seed), STREAMS[stream]]
        self._epochs: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._epochs:
            self._epochs = {e: np.random.default_rng([*self.seed, 0, e]).permutation(len(self.examples))}
        return self._epochs[e]

    def _flat(self, start: int, count: int) -> np.ndarray:
        n = len(self.examples)
        return np.asarray([self._epoch(p // n)[p % n] for p in range(start, start + count)], np.int64)

    def indices(self, k: int) -> np.ndarray:
        if self.window == 1:
            return self._flat(k * self.batch, self.batch)
        w, slot = divmod(k, self.window)
        pool = self._flat(w * self.window * self.batch, self.window * self.batch)
        lengths = np.asarray([self.examples.length(int(i)) for i in pool])
        pool = pool[np.argsort(lengths, kind="stable")].reshape(self.window, self.batch)
        order = np.random.default_rng([*self.seed, 1, w]).permutation(self.window)
        return pool[order[slot]]


class Pipeline:
    """Named streams and their positions; ``next(kind)`` gives one optimizer step's host batch."""

    def __init__(self, cfg: TrainConfig, examples: dict[str, Examples], pad_id: int):
        self.sizes, self.pad_id = buckets(cfg), pad_id
        self.streams = {}
        for name, ex in examples.items():
            per_step = cfg.midalign.align_batch if name == "align" else cfg.train.batch_size
            micro = per_step if name == "align" else cfg.micro_batch
            self.streams[name] = Stream(ex, per_step, micro, cfg.seed, name, cfg.data.length_window)
        self.position = dict.fromkeys(self.streams, 0)

    def state(self) -> dict[str, int]:
        return dict(self.position)

    def restore(self, state: dict[str, Any]) -> None:
        unknown = set(state) - set(self.position)
        if unknown:
            raise DataError(f"checkpoint data position names unknown streams {sorted(unknown)}")
        self.position.update({k: int(v) for k, v in state.items()})

    def peek(self, kind: str, k: int) -> dict[str, np.ndarray]:
        s = self.streams[kind]
        idx = s.indices(k)
        ex = s.examples
        length = bucket_length(max(ex.length(int(i)) for i in idx), self.sizes)
        micro = s.micro
        a = len(idx) // micro
        parts = []
        for j in range(a):
            chunk = idx[j * micro : (j + 1) * micro]
            cols = len(ex.rows[int(chunk[0])])
            seqs = [ex.rows[int(i)][c] for c in range(cols) for i in chunk]  # side-major rows
            out = collate(seqs, length, self.pad_id)
            out["index"] = chunk.astype(np.int32)
            for key, values in ex.extra.items():
                out[key] = values[chunk]
            parts.append(out)
        return {key: np.stack([p[key] for p in parts]) for key in parts[0]}

    def next(self, kind: str) -> dict[str, np.ndarray]:
        batch = self.peek(kind, self.position[kind])
        self.position[kind] += 1
        return batch


def iterate_all(examples: Examples, batch: int, sizes: Sequence[int], pad_id: int):
    """Every example once in order, ``batch`` at a time (the last batch padded by repeating example 0)."""
    n = len(examples)
    for start in range(0, n, batch):
        idx = np.arange(start, start + batch) % n if start + batch > n else np.arange(start, start + batch)
        valid = min(batch, n - start)
        length = bucket_length(max(examples.length(int(i)) for i in idx), sizes)
        cols = len(examples.rows[0])
        seqs = [examples.rows[int(i)][c] for c in range(cols) for i in idx]
        yield start, valid, collate(seqs, length, pad_id)
