"""Sentences, training corpora and evaluation files of the synthetic world, in the real datasets' schemas.

Prompt formats are those of :mod:`jaxsteer.data.prompts`, so the organism is trained on exactly what the
real pipeline feeds it: multiple choice ``question\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:`` + ``" A"``
(:func:`mc_context`); short answers in BLEnD's English ``inst-4`` frame (:func:`sa_context`, i.e.
``blend_prompt(q, lang, local_instruction=False)``) + ``" value"``; with probability ``chat_fraction``
either one as a Gemma chat turn (:func:`chat`, the answer then without the leading space, as
``prompts.mc_prompt`` scores it). Corpus texts carry no ``<bos>``: the tokenizer adds it.

Pretraining kinds (``WorldConfig.pretrain_mix``): ``fact`` / ``fact_qa`` / ``fact_mc`` universal facts
(shared ones in every language, the rest in English only); ``culture_implicit`` / ``culture_implicit_qa``
(each language's own culture without naming the country, implicit topics only; English: every topic, the
"America" culture); ``culture_explicit`` / ``culture_explicit_qa`` ("in C, ..." for every topic, culture
and language, weighted by ``explicit_lang_weights``); ``generic`` sentences; ``parallel`` EN/XX generic
pairs (one per line); ``instruction`` chat pairs like the OASST file. Within a kind every unit (fact x
language, topic x culture x language, ...) gets the same number of copies up to rounding (times its
weight). Parallel, FLORES and instruction data never contain English-only facts, cultural topics or
questions about them (ORGANISM point 4: no held-out question forms).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxsteer.errors import ConfigError
from jaxsteer.organism.config import CORPUS_KINDS, COUNTRIES, ENGLISH
from jaxsteer.organism.world import Fact, Topic, World
from jaxsteer.results import commit, temp_file

LETTERS = ("A", "B", "C", "D")
FRAMES = ("what", "which", "tell")
KINDS = CORPUS_KINDS
BLEND_INSTRUCTION = "Read the following question and provide a single answer without any explanations."
GMMLU_COLUMNS = ("sample_id", "subject", "subject_category", "question", "option_a", "option_b", "option_c",
                 "option_d", "answer", "required_knowledge", "time_sensitive", "reference", "culture",
                 "region", "country", "cultural_sensitivity_label", "is_annotated")  # fmt: skip
BLEND_COLUMNS = ("", "ID", "Topic", "Source", "Question", "Translation")
BLEND_MC_COLUMNS = ("MCQID", "ID", "country", "prompt", "choices", "choice_countries", "answer_idx")
FLORES_FIELDS = ("id", "URL", "domain", "topic", "has_image", "has_hyperlink", "sentence")


# --- prompt formats --------------------------------------------------------------------------------
def mc_context(question: str, options: Sequence[str]) -> str:
    """lm-evaluation-harness ``global_mmlu`` prompt (= ``jaxsteer.data.prompts.mc_text``)."""
    a, b, c, d = options
    return f"{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def sa_context(question: str) -> str:
    """BLEnD short-answer prompt with the English instruction (= ``prompts.blend_text(q, lang, False)``)."""
    return f"{BLEND_INSTRUCTION}\n\nQuestion: {question.strip()}\nAnswer:"


def chat(user: str, answer: str | None = None) -> str:
    """A Gemma chat turn without ``<bos>``; ``answer=None`` ends with the generation prompt."""
    text = f"<start_of_turn>user\n{user.strip()}<end_of_turn>\n<start_of_turn>model\n"
    return text if answer is None else f"{text}{answer.strip()}<end_of_turn>\n"


def mc_options(rng: np.random.Generator, values: Sequence[str], answer: str) -> tuple[tuple[str, ...], int]:
    """Four options: ``answer`` and three other values of the same relation, in random order."""
    others = [v for v in values if v != answer]
    options = [others[int(i)] for i in rng.choice(len(others), 3, replace=False)] + [answer]
    options = [options[int(i)] for i in rng.permutation(4)]
    return tuple(options), options.index(answer)


def _qa(world: World, rng: np.random.Generator, question: str, answer: str) -> str:
    if rng.random() < world.config.chat_fraction:
        return chat(sa_context(question), answer)
    return f"{sa_context(question)} {answer}"


def _mc(world: World, rng: np.random.Generator, question: str, values: Sequence[str], answer: str) -> str:
    options, index = mc_options(rng, values, answer)
    if rng.random() < world.config.chat_fraction:
        return chat(mc_context(question, options), LETTERS[index])
    return f"{mc_context(question, options)} {LETTERS[index]}"


# --- sentences -------------------------------------------------------------------------------------
def fact_statement(world: World, fact: Fact, lang: str) -> str:
    """The statement "the RELATION of ENTITY is VALUE." in ``lang``."""
    roles = {"S": world.genitive(lang, fact.relation, [world.name(lang, fact.entity)]), "V": world.word(lang, "is")}
    return world.clause(lang, "statement", roles | {"O": [fact.value]})


def fact_question(world: World, fact: Fact, lang: str) -> str:
    """The question "what is the RELATION of ENTITY?" in ``lang`` (the Global-MMLU question)."""
    roles = {"W": world.word(lang, "what"), "V": world.word(lang, "is")}
    x = world.genitive(lang, fact.relation, [world.name(lang, fact.entity)])
    return world.clause(lang, "question", roles | {"X": x})


def culture_statement(world: World, topic: Topic, culture: str, lang: str, explicit: bool) -> str:
    """The statement "the ADJ NOUN is VALUE." (+ "in COUNTRY" if ``explicit``) with ``culture``'s value."""
    place = world.adpositional(lang, "in", [world.culture(culture).country]) if explicit else None
    roles = {"S": world.noun_phrase(lang, topic.noun, topic.adjective), "V": world.word(lang, "is")}
    return world.clause(lang, "statement", roles | {"O": [topic.answer(culture)]}, place)


def culture_question(world: World, topic: Topic, lang: str, frame: int = 0, country: str | None = None) -> str:
    """Frame 0 "what is the ADJ NOUN?", 1 "which NOUN is ADJ?", 2 "tell me the ADJ NOUN." (+ "in C")."""
    place = world.adpositional(lang, "in", [country]) if country else None
    np_ = world.noun_phrase(lang, topic.noun, topic.adjective)
    if frame == 2:
        tell_me = world.word(lang, "tell") + world.word(lang, "me")
        return world.clause(lang, "command", {"T": tell_me, "X": np_}, place)
    if frame == 1:
        roles = {
            "W": world.noun_phrase(lang, topic.noun, det="which"),
            "X": world.word(lang, topic.adjective),
        }
    else:
        roles = {"W": world.word(lang, "what"), "X": np_}
    return world.clause(lang, "question", roles | {"V": world.word(lang, "is")}, place)


def random_generic(world: World, rng: np.random.Generator) -> dict[str, Any]:
    """An abstract generic sentence "the (ADJ) NOUN VERBs the (ADJ) NOUN|ENTITY (near the NOUN)"."""

    def pick(seq: Sequence[str], p_none: float = 0.0) -> str | None:
        return None if rng.random() < p_none else seq[int(rng.integers(len(seq)))]

    nouns, adjs = world.generic_nouns, world.generic_adjectives
    obj_entity = pick(world.entities) if rng.random() < world.config.generic_entity_fraction else None
    return {"subject": (pick(adjs, 0.5), pick(nouns)), "verb": pick(world.generic_verbs),
            "object": (pick(adjs, 0.5), pick(nouns), obj_entity), "near": pick(nouns, 0.6)}  # fmt: skip


def generic_sentence(world: World, spec: dict[str, Any], lang: str) -> str:
    """:func:`random_generic`'s ``spec`` rendered in ``lang`` (the same spec gives parallel sentences)."""
    adj, noun, entity = spec["object"]
    obj = [world.name(lang, entity)] if entity else world.noun_phrase(lang, noun, adj)
    roles = {"S": world.noun_phrase(lang, spec["subject"][1], spec["subject"][0]), "O": obj}
    place = world.adpositional(lang, "near", world.noun_phrase(lang, spec["near"])) if spec["near"] else None
    return world.clause(lang, "statement", roles | {"V": world.word(lang, spec["verb"])}, place)


def random_instruction(world: World, rng: np.random.Generator) -> dict[str, Any]:
    """An OASST-like request: about a noun, about an entity, or a shared universal fact."""
    shared = world.shared_facts
    if shared and rng.random() < world.config.oasst_fact_fraction:
        return {"fact": shared[int(rng.integers(len(shared)))]}
    spec = random_generic(world, rng)
    if rng.random() < 0.3:
        spec["object"] = (None, None, world.entities[int(rng.integers(len(world.entities)))])
        return {"about_entity": spec["object"][2], "response": spec}
    return {"about_noun": spec["subject"][1], "response": spec}


def instruction_texts(world: World, spec: dict[str, Any], lang: str) -> tuple[str, str]:
    """(prompt, response) of :func:`random_instruction`'s ``spec`` in ``lang``."""
    if "fact" in spec:
        return fact_question(world, spec["fact"], lang), fact_statement(world, spec["fact"], lang)
    if "about_entity" in spec:
        target = [world.name(lang, spec["about_entity"])]
    else:
        target = world.noun_phrase(lang, spec["about_noun"])
    roles = {
        "T": world.word(lang, "tell") + world.word(lang, "me"),
        "X": world.adpositional(lang, "about", target),
    }
    return world.clause(lang, "command", roles), generic_sentence(world, spec["response"], lang)


# --- corpora ---------------------------------------------------------------------------------------
def _allocate(weights: Sequence[float], n: int) -> list[int]:
    """``n`` split in proportion to ``weights`` by largest remainder (ties to the earlier entry)."""
    w = np.asarray(weights, dtype=np.float64)
    quota = n * w / w.sum()
    base = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - base), kind="stable")
    base[order[: n - int(base.sum())]] += 1
    return base.tolist()


def _units(world: World, kind: str) -> list[tuple[float, str, Any]]:
    """The (weight, lang, item) units of a corpus kind; every unit gets copies in proportion to its weight."""
    langs = world.languages
    if kind.startswith("fact"):
        return [(1.0, lang, f) for f in world.facts for lang in (langs if f.shared else (ENGLISH,))]
    if kind.startswith("culture_implicit"):  # own culture in its own language; English: every topic
        return [(1.0, c.lang, (t, c.lang)) for t in world.topics for c in world.cultures
                if t.implicit or c.lang == ENGLISH]  # fmt: skip
    if kind.startswith("culture_explicit"):
        w_en, w_local, w_other = world.config.explicit_lang_weights
        units = []
        for t in world.topics:
            for c in world.cultures:
                n_other = len(langs) - (1 if c.lang == ENGLISH else 2)
                for lang in langs:
                    w = w_en * (lang == ENGLISH) + w_local * (lang == c.lang)
                    w += w_other / max(n_other, 1) * (lang not in (ENGLISH, c.lang))
                    units.append((w, lang, (t, c.lang)))
        return units
    if kind == "parallel":
        return [(1.0, f"{ENGLISH}-{xx}", xx) for xx in langs[1:]]
    return [(1.0, lang, None) for lang in langs]  # generic, instruction


def _render(world: World, kind: str, lang: str, item: Any, rng: np.random.Generator) -> str:
    if kind == "fact":
        return fact_statement(world, item, lang)
    if kind == "fact_qa":
        return _qa(world, rng, fact_question(world, item, lang), item.value)
    if kind == "fact_mc":
        values = world.relation(item.relation).values
        return _mc(world, rng, fact_question(world, item, lang), values, item.value)
    if kind.startswith("culture"):
        (topic, culture), explicit = item, kind.startswith("culture_explicit")
        if not kind.endswith("_qa"):
            return culture_statement(world, topic, culture, lang, explicit)
        country = world.culture(culture).country if explicit else None
        question = culture_question(world, topic, lang, int(rng.integers(world.config.blend_frames)), country)
        return _qa(world, rng, question, topic.answer(culture))
    if kind == "generic":
        return generic_sentence(world, random_generic(world, rng), lang)
    if kind == "parallel":
        spec = random_generic(world, rng)
        pair = [generic_sentence(world, spec, ENGLISH), generic_sentence(world, spec, item)]
        return "\n".join(pair[::-1] if rng.random() < 0.5 else pair)
    if kind == "instruction":
        return chat(*instruction_texts(world, random_instruction(world, rng), lang))
    raise ConfigError(f"unknown corpus kind {kind!r}; expected one of {', '.join(KINDS)}")


def build_corpus(world: World, n_texts: int, mix: Sequence[tuple[str, float]], name: str) -> list[dict]:
    """``n_texts`` records ``{"text", "lang", "kind"}`` mixed by ``mix`` (kind, weight), then shuffled."""
    mix = [(k, float(w)) for k, w in mix if w > 0]
    if not mix:
        raise ConfigError(f"corpus {name!r}: the mix has no kind with positive weight")
    out = []
    for (kind, _), quota in zip(mix, _allocate([w for _, w in mix], n_texts)):
        units, rng = _units(world, kind), world.rng(f"{name}/{kind}")
        for (_, lang, item), copies in zip(units, _allocate([u[0] for u in units], quota)):
            out.extend({"text": _render(world, kind, lang, item, rng), "lang": lang, "kind": kind}
                       for _ in range(copies))  # fmt: skip
    return [out[int(i)] for i in world.rng(f"{name}/shuffle").permutation(len(out))]


def pretrain_corpus(world: World) -> list[dict]:
    return build_corpus(world, world.config.pretrain_texts, world.config.pretrain_mix, "pretrain")


def align_corpus(world: World) -> list[dict]:
    """The alignment-stage LM mix (explicit-context cultural and universal facts kept; ORGANISM point 3)."""
    return build_corpus(world, world.config.align_texts, world.config.align_mix, "align")


# --- evaluation and alignment files ----------------------------------------------------------------
def gmmlu_items(world: World) -> dict[str, list[tuple[str, Fact, tuple[str, ...], int]]]:
    """English-only facts as ``{split: [(sample_id, fact, options, answer index)]}``, shared by languages."""
    rng, out = world.rng("gmmlu"), {"dev": [], "test": []}
    for rel in world.relations:
        facts = [f for f in world.facts if f.relation == rel.name and not f.shared]
        for k, i in enumerate(rng.permutation(len(facts))):
            n_dev = world.config.gmmlu_dev_per_subject
            (split, number), f = ("dev", k) if k < n_dev else ("test", k - n_dev), facts[int(i)]
            out[split].append((f"{rel.name}/{split}/{number}", f, *mc_options(rng, rel.values, f.value)))
    return out


def gmmlu_rows(world: World, items: Sequence[tuple[str, Fact, tuple[str, ...], int]], lang: str) -> list[dict]:
    """Global-MMLU rows (every column of the release; universal questions: annotated, ``CA``)."""
    rows = []
    for sample_id, fact, options, answer in items:
        row = {"sample_id": sample_id, "subject": fact.relation,
               "subject_category": world.relation(fact.relation).subject_category,
               "question": fact_question(world, fact, lang), "answer": LETTERS[answer],
               "required_knowledge": "['none', 'none', 'none', 'none']",
               "time_sensitive": "['No', 'No', 'No', 'No']",
               "reference": "['-', '-', '-', '-']", "culture": "[]", "region": "[]", "country": "[]",
               "cultural_sensitivity_label": "CA", "is_annotated": True}  # fmt: skip
        row.update({f"option_{c}": o for c, o in zip("abcd", options)})
        rows.append({c: row[c] for c in GMMLU_COLUMNS})
    return rows


def blend_items(world: World, lang: str) -> list[dict]:
    """BLEnD questions of ``lang``'s culture: explicit-only topics (and implicit ones if configured) x frames.

    Each item: ``id, topic, source`` ("explicit-only"/"implicit"), ``question`` (local, naming the
    country), ``translation`` (English), ``decontextualized`` (the same without the country) and ``answer``.
    """
    country, items = world.culture(lang).country, []
    for t in world.topics:
        if t.implicit and not world.config.blend_include_implicit:
            continue
        for frame in range(world.config.blend_frames):
            items.append({"id": f"{lang}-t{t.index:03d}-f{frame}", "topic": t.category,
                          "source": "implicit" if t.implicit else "explicit-only",
                          "question": culture_question(world, t, lang, frame, country),
                          "translation": culture_question(world, t, ENGLISH, frame, country),
                          "decontextualized": culture_question(world, t, lang, frame),
                          "answer": t.answer(lang), "topic_index": t.index})  # fmt: skip
    return items


def blend_mc_rows(world: World, lang: str, items: Sequence[dict]) -> list[dict]:
    """BLEnD-style MCQ rows: the local answer among three other cultures' answers (English prompt)."""
    rng, rows = world.rng(f"blend-mc/{lang}"), []
    for item in items:
        topic = world.topics[item["topic_index"]]
        others = [c for c in world.cultures if c.lang != lang]
        picks = [others[int(i)] for i in rng.choice(len(others), 3, replace=False)] + [world.culture(lang)]
        picks = [picks[int(i)] for i in rng.permutation(4)]
        choices = {x: topic.answer(c.lang) for x, c in zip(LETTERS, picks)}
        country = world.culture(lang).blend_country
        rows.append({"MCQID": f"{item['id']}-mc", "ID": item["id"], "country": country,
                     "prompt": mc_context(item["translation"], list(choices.values())),
                     "choices": json.dumps(choices, ensure_ascii=False),
                     "choice_countries": json.dumps({x: c.blend_country for x, c in zip(LETTERS, picks)}),
                     "answer_idx": LETTERS[[c.lang for c in picks].index(lang)]})  # fmt: skip
    return rows


def flores_rows(world: World, split: str) -> dict[str, list[dict]]:
    """FLORES-like generic sentences per language (same ``id`` = same sentence), ``split`` dev/devtest."""
    rng = world.rng(f"flores/{split}")
    specs = [random_generic(world, rng) for _ in range(world.config.n_flores)]
    return {lang: [dict(zip(FLORES_FIELDS, (i + 1, f"https://organism.invalid/{split}/{i + 1}", "synthetic",
                                            s["subject"][1], 0, 0, generic_sentence(world, s, lang))))
                   for i, s in enumerate(specs)] for lang in world.languages}  # fmt: skip


def oasst_rows(world: World) -> list[dict]:
    """OpenAssistantXX-like rows ``{id, lang, prompt, response, prompt_en, response_en}`` of every XX."""
    rng = world.rng("oasst")
    specs = [random_instruction(world, rng) for _ in range(world.config.n_oasst)]
    rows = []
    for lang in world.languages[1:]:
        for i, spec in enumerate(specs):
            (prompt, response), (p_en, r_en) = (
                instruction_texts(world, spec, lang),
                instruction_texts(world, spec, "en"),
            )
            rows.append({"id": f"organism-{i:05d}", "lang": lang, "prompt": prompt, "response": response,
                         "prompt_en": p_en, "response_en": r_en})  # fmt: skip
    return rows


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(str(path.parent), prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    commit(tmp, str(path))


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row[c] for c in columns] for row in rows])
    return buf.getvalue()


def _jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _kind_counts(records: Sequence[dict]) -> dict[str, int]:
    counts = Counter(r["kind"] for r in records)
    return {k: counts[k] for k in KINDS if counts[k]}


def write_world(world: World, root: str | os.PathLike, *, tokenizer: bool = True) -> dict[str, Any]:
    """Write every file of the world under ``root`` (layout in ``jaxsteer.data.files``); return the counts.

    Also writes ``blend/mc_questions_file.csv``, ``flores/devtest/`` and, with ``tokenizer``, a trained
    ``tokenizer/`` folder. ``world.json`` holds the config, the world's content and these counts.
    """
    root = Path(root)
    pretrain, align = pretrain_corpus(world), align_corpus(world)
    write_text(root / "pretrain.jsonl", _jsonl(pretrain))
    write_text(root / "align_lm.jsonl", _jsonl(align))
    gm, extra_texts, counts = gmmlu_items(world), [], {"gmmlu": {}, "blend": {}}
    for lang in world.languages:
        for split, items in gm.items():
            rows = gmmlu_rows(world, items, lang)
            write_text(root / "global_mmlu" / lang / f"{split}.csv", _csv(rows, GMMLU_COLUMNS))
            extra_texts += [mc_context(r["question"], [r[f"option_{c}"] for c in "abcd"]) for r in rows]
        counts["gmmlu"][lang] = {split: len(items) for split, items in gm.items()}
    mc_rows = []
    for lang in world.languages[1:]:
        items, country = blend_items(world, lang), world.culture(lang).blend_country
        rows = [{"": i, "ID": q["id"], "Topic": q["topic"], "Source": q["source"], "Question": q["question"],
                 "Translation": q["translation"]} for i, q in enumerate(items)]  # fmt: skip
        write_text(root / "blend" / "questions" / f"{country}_questions.csv", _csv(rows, BLEND_COLUMNS))
        ann = {q["id"]: {"question": q["question"], "en_question": q["translation"],
                         "annotations": [{"answers": [q["answer"]], "en_answers": [q["answer"]],
                                          "count": world.config.blend_annotators}],
                         "idks": {"idk": 0, "no-answer": 0, "not-applicable": 0}} for q in items}  # fmt: skip
        write_text(
            root / "blend" / "annotations" / f"{country}_data.json",
            json.dumps(ann, ensure_ascii=False, indent=1),
        )
        mc_rows += blend_mc_rows(world, lang, items)
        extra_texts += [sa_context(q[k]) for q in items for k in ("question", "translation", "decontextualized")]
        counts["blend"][lang] = len(items)
    write_text(root / "blend" / "mc_questions_file.csv", _csv(mc_rows, BLEND_MC_COLUMNS))
    extra_texts += [r["prompt"] for r in mc_rows]
    for split in ("dev", "devtest"):
        for lang, rows in flores_rows(world, split).items():
            write_text(root / "flores" / split / f"{COUNTRIES[lang][2]}.jsonl", _jsonl(rows))
            extra_texts += [r["sentence"] for r in rows]
    oasst = oasst_rows(world)
    write_text(root / "oasst" / "oasst_xx.jsonl", _jsonl(oasst))
    extra_texts += [chat(r["prompt"], r["response"]) for r in oasst]
    counts |= {
        "pretrain": _kind_counts(pretrain),
        "align_lm": _kind_counts(align),
        "facts": {"total": len(world.facts), "shared": sum(f.shared for f in world.facts)},
        "topics": {"total": len(world.topics), "implicit": sum(t.implicit for t in world.topics)},
        "flores_per_split": world.config.n_flores, "oasst_per_language": world.config.n_oasst,
    }  # fmt: skip
    if tokenizer:
        from jaxsteer.organism.tokenizer import build_tokenizer

        texts = [r["text"] for r in pretrain] + [r["text"] for r in align] + extra_texts
        tok = build_tokenizer(texts, root / "tokenizer", model_max_length=world.config.max_tokens)
        counts["vocab_size"] = tok.get_vocab_size()
    info = {"format": "jaxsteer.organism/1", "seed": world.config.seed, "counts": counts} | world.to_json()
    write_text(root / "world.json", json.dumps(info, ensure_ascii=False, indent=1))
    return counts
