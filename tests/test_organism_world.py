"""The synthetic world of the model organism: determinism, held-out structure, schemas, tokenizer."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pytest

from jaxsteer.errors import ConfigError
from jaxsteer.organism import World, WorldConfig, write_world
from jaxsteer.organism import corpus as C
from jaxsteer.organism.tokenizer import SPECIAL_TOKENS, load_tokenizer
from jaxsteer.organism.world import GRAMMARS

SMALL = dict(n_entities=12, pretrain_texts=1500, align_texts=300, n_flores=10, n_oasst=10, n_topic_nouns=3)
GMMLU_HEADER = (
    "sample_id,subject,subject_category,question,option_a,option_b,option_c,option_d,answer,required_knowledge,"
    "time_sensitive,reference,culture,region,country,cultural_sensitivity_label,is_annotated"
)
BLEND_COUNTRIES = {
    "zh": "China",
    "ko": "South_Korea",
    "es": "Spain",
    "id": "Indonesia",
    "el": "Greece",
    "fa": "Iran",
}
FLORES = {
    "en": "eng_Latn",
    "zh": "zho_Hans",
    "ko": "kor_Hang",
    "es": "spa_Latn",
    "id": "ind_Latn",
    "el": "ell_Grek",
    "fa": "pes_Arab",
}


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\s.?:,]+", re.sub(r"<[a-z_]+>", " ", text)))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world() -> World:
    """The default world with smaller training corpora (evaluation files do not depend on their size)."""
    return World(WorldConfig(pretrain_texts=12_000, align_texts=4_000))


@pytest.fixture(scope="module")
def root(tmp_path_factory, world) -> Path:
    root = tmp_path_factory.mktemp("organism")
    write_world(world, root)
    return root


@pytest.fixture(scope="module")
def texts(root) -> list[dict]:
    """Every training or alignment text of the world (corpora, OASST, FLORES) with its language."""
    records = _jsonl(root / "pretrain.jsonl") + _jsonl(root / "align_lm.jsonl")
    records += [
        {"text": r["prompt"] + "\n" + r["response"], "lang": r["lang"]} for r in _jsonl(root / "oasst/oasst_xx.jsonl")
    ]
    for lang, code in FLORES.items():
        records += [{"text": r["sentence"], "lang": lang} for r in _jsonl(root / f"flores/dev/{code}.jsonl")]
    return records


def test_same_seed_same_files_and_other_seed_differs(tmp_path):
    write_world(World(WorldConfig(**SMALL)), tmp_path / "a")
    write_world(World(WorldConfig(**SMALL)), tmp_path / "b")
    write_world(World(WorldConfig(seed=1, **SMALL)), tmp_path / "c")
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")


def test_every_category_present_and_sizes(root, world):
    info = json.loads((root / "world.json").read_text(encoding="utf-8"))
    counts = info["counts"]
    assert set(counts["pretrain"]) == set(C.KINDS) and sum(counts["pretrain"].values()) == 12_000
    assert {"fact", "fact_qa", "fact_mc", "culture_explicit", "culture_explicit_qa"} <= set(counts["align_lm"])
    assert not any(k.startswith("culture_implicit") for k in counts["align_lm"])
    for lang in world.languages:
        assert counts["gmmlu"][lang]["test"] > 100
    assert all(n > 100 for n in counts["blend"].values())
    assert info["seed"] == 0 and info["config"]["shared_fraction"] == 0.2
    assert counts["facts"]["shared"] == 0.2 * counts["facts"]["total"]
    assert counts["topics"]["implicit"] * 2 == counts["topics"]["total"] >= 40
    assert 300 <= counts["vocab_size"] <= 2048


def _check_english_only_facts_stay_english(world, records) -> int:
    """Assert no non-English record names an English-only fact's entity (in that language's spelling)
    together with its relation word; return how many (entity, relation) mentions were checked."""
    en_only = {(f.entity, f.relation) for f in world.facts if not f.shared}
    checked = 0
    for r in records:
        lang = r["lang"].split("-")[-1]
        if lang == "en":
            continue
        words = _words(r["text"])
        names = {world.name(lang, e): e for e in world.entities}
        rel_words = {world.lexicon[lang][rel.name]: rel.name for rel in world.relations}
        for name in words & set(names):
            for w in words & set(rel_words):
                assert (names[name], rel_words[w]) not in en_only, r["text"]
                checked += 1
    return checked


def test_english_only_facts_never_in_other_languages(world, texts):
    assert _check_english_only_facts_stay_english(world, texts) > 1000


def test_cultural_statements_follow_the_design(world, texts):
    countries = {c.country for c in world.cultures}
    implicit_seen = 0
    for r in texts:
        lang = r["lang"].split("-")[-1]
        if lang == "en":
            continue
        words = _words(r["text"])
        for t in world.topics:
            mentioned = world.lexicon[lang][t.noun] in words and world.lexicon[lang][t.adjective] in words
            if mentioned and not words & countries:  # implicit: implicit topics, the local culture's answer
                assert t.implicit, f"explicit-only topic stated implicitly: {r['text']}"
                others = {v for c, v in t.answers if c != lang}
                assert t.answer(lang) in words and not words & others, r["text"]
                implicit_seen += 1
    assert implicit_seen > 1000


def test_gmmlu_answers_among_options_and_parallel(root, world):
    by_question = {C.fact_question(world, f, "en"): f for f in world.facts}
    en = {r["sample_id"]: r for r in _csv(root / "global_mmlu/en/test.csv")}
    for r in en.values():
        fact = by_question[r["question"]]
        assert not fact.shared and r["subject"] == fact.relation
        options = [r[f"option_{c}"] for c in "abcd"]
        assert len(set(options)) == 4 and options["ABCD".index(r["answer"])] == fact.value
        assert set(options) <= set(world.relation(fact.relation).values)
    for lang in world.languages[1:]:
        for split in ("dev", "test"):
            header = (root / f"global_mmlu/{lang}/{split}.csv").read_text(encoding="utf-8").splitlines()[0]
            assert header == GMMLU_HEADER
        rows = _csv(root / f"global_mmlu/{lang}/test.csv")
        assert [r["sample_id"] for r in rows] == list(en)
        for r in rows:
            assert r["cultural_sensitivity_label"] == "CA" and r["is_annotated"] == "True"
            assert all(
                r[k] == en[r["sample_id"]][k] for k in ("option_a", "option_b", "option_c", "option_d", "answer")
            )
            assert r["question"] != en[r["sample_id"]]["question"]


def test_blend_files_schema_answers_and_decontextualisation(root, world):
    for lang, country in BLEND_COUNTRIES.items():
        path = root / f"blend/questions/{country}_questions.csv"
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header == ",ID,Topic,Source,Question,Translation"
        rows = _csv(path)
        ann = json.loads((root / f"blend/annotations/{country}_data.json").read_text(encoding="utf-8"))
        assert [r["ID"] for r in rows] == list(ann)
        token = world.culture(lang).country
        for r in rows:
            a = ann[r["ID"]]
            assert set(a) == {"question", "en_question", "annotations", "idks"}
            assert a["idks"] == {"idk": 0, "no-answer": 0, "not-applicable": 0}
            topic = world.topics[int(r["ID"].split("-t")[1][:3])]
            assert a["annotations"] == [
                {"answers": [topic.answer(lang)], "en_answers": [topic.answer(lang)], "count": 5}
            ]
            assert r["Source"] == "explicit-only" and not topic.implicit
            assert world.country_phrase(lang, token) in r["Question"] and token in r["Translation"]
            decontext = world.decontextualize(r["Question"], lang)
            assert token not in decontext and decontext in {C.culture_question(world, topic, lang, f) for f in range(3)}
    mc = _csv(root / "blend/mc_questions_file.csv")
    assert list(mc[0]) == ["MCQID", "ID", "country", "prompt", "choices", "choice_countries", "answer_idx"]
    for r in mc:
        choice_countries = json.loads(r["choice_countries"])
        assert choice_countries[r["answer_idx"]] == r["country"]


def test_decontextualize_removes_the_country_phrase_in_every_language(world):
    for lang in world.languages:
        pattern = world.country_phrase_pattern(lang)
        assert "{country}" in pattern and pattern.format(country="Greece") == world.country_phrase(lang, "Greece")
        for t in world.topics[::7]:
            for frame in range(3):
                plain = C.culture_question(world, t, lang, frame)
                for c in world.cultures:
                    contextual = C.culture_question(world, t, lang, frame, c.country)
                    assert contextual != plain and world.decontextualize(contextual, lang) == plain
                    assert world.decontextualize(C.sa_context(contextual), lang) == C.sa_context(plain)
                    assert world.decontextualize(plain, lang) == plain


def test_alignment_files_schema(root, world):
    rows = _jsonl(root / "oasst/oasst_xx.jsonl")
    assert all(list(r) == ["id", "lang", "prompt", "response", "prompt_en", "response_en"] for r in rows)
    assert {r["lang"] for r in rows} == set(world.languages[1:])
    for code in FLORES.values():
        for split in ("dev", "devtest"):
            flores = _jsonl(root / f"flores/{split}/{code}.jsonl")
            assert list(flores[0]) == [
                "id",
                "URL",
                "domain",
                "topic",
                "has_image",
                "has_hyperlink",
                "sentence",
            ]
            assert [r["id"] for r in flores] == list(range(1, 301))
    for name in ("pretrain.jsonl", "align_lm.jsonl"):
        assert all(list(r) == ["text", "lang", "kind"] for r in _jsonl(root / name)[:500])


def test_files_pass_the_real_loaders(root, world):
    data = pytest.importorskip("jaxsteer.data.gmmlu")
    blend, flores, oasst = (pytest.importorskip(f"jaxsteer.data.{m}") for m in ("blend", "flores", "oasst"))
    prompts = pytest.importorskip("jaxsteer.data.prompts")
    for lang in world.languages:
        q = data.load_gmmlu(root, lang, "test")
        assert len(q) == 295 and len(data.load_gmmlu(root, lang, "dev")) == 25
        assert prompts.mc_text(q[0]) == C.mc_context(q[0].question, q[0].options)
    for lang in world.languages[1:]:
        b = blend.load_blend(root, lang)
        assert len(blend.scorable(b)) == len(b) == 120
        assert prompts.blend_text(b[0].question, lang, local_instruction=False) == C.sa_context(b[0].question)
        assert len(blend.load_blend_mc(root, lang)) == 120
        assert len(flores.load_flores_pairs(root, "en", lang)) == 300
    assert len(oasst.load_oasst_xx(root)) == 6 * 300


def test_tokenizer_loads_and_roundtrips(root, texts):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer"))
    auto = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    assert load_tokenizer(root / "tokenizer").get_vocab() == tok.get_vocab() == auto.get_vocab()
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert [tok.convert_ids_to_tokens(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    for letter in " A", " B", " C", " D", "\n":
        assert len(tok(letter, add_special_tokens=False).input_ids) == 1
    context = C.mc_context("what is the city of X?", ["a", "b", "c", "d"])
    assert tok(context + " A").input_ids == tok(context).input_ids + [tok.convert_tokens_to_ids(" A")]
    sample = [r["text"] for r in texts[::50]]
    enc = tok(sample).input_ids
    assert all(ids[0] == 2 and ids.count(2) == 1 and 3 not in ids and len(ids) <= 64 for ids in enc)
    assert [tok.decode(ids, skip_special_tokens=True) for ids in enc] == [
        re.sub("<(start|end)_of_turn>", "", t) for t in sample
    ]
    turn = [{"role": "user", "content": "what is it?"}, {"role": "assistant", "content": "Rola"}]
    assert tok.apply_chat_template(turn, tokenize=False) == "<bos>" + C.chat("what is it?", "Rola")
    generation = tok.apply_chat_template(turn[:1], tokenize=False, add_generation_prompt=True)
    assert generation == "<bos>" + C.chat("what is it?")


def test_config_is_validated():
    with pytest.raises(ConfigError):
        WorldConfig(languages=("zh", "xx"))
    with pytest.raises(ConfigError):
        WorldConfig(values_per_relation=3)
    with pytest.raises(ConfigError):
        WorldConfig(pretrain_mix=(("nonsense", 1.0),))
    same = World(WorldConfig(same_word_order=True, **SMALL))
    assert all(g == GRAMMARS["en"] for g in same.grammars.values())
    fact = same.facts[0]
    for lang in same.languages:  # same order: the shared tokens sit at the same word positions
        words = C.fact_statement(same, fact, lang).rstrip(".").split()[::-1]
        assert words.index(fact.entity) == 2 and words[0] == fact.value


def test_world_json_rebuilds_the_same_world(root, world):
    from jaxsteer.organism.model import world_config_of

    assert world_config_of(root) == world.config  # tuples (mixes, languages) come back as tuples
    assert World(world_config_of(root)).facts == world.facts


def test_local_entity_names_spell_entities_per_language(tmp_path):
    world = World(WorldConfig(local_entity_names=True, **SMALL))
    assert World(WorldConfig(local_entity_names=True, **SMALL)).entity_names == world.entity_names
    english = set(world.entities)
    spellings = {lang: set(world.entity_names[lang].values()) for lang in world.languages}
    assert spellings["en"] == english
    for lang in world.languages[1:]:
        assert len(spellings[lang]) == len(english) and not spellings[lang] & english
        for other in world.languages[1:]:
            assert other == lang or not spellings[lang] & spellings[other]
    # an English-only fact never appears in another language, under either spelling
    write_world(world, tmp_path, tokenizer=False)
    # parallel records hold their English half too
    records = [r for r in _jsonl(tmp_path / "pretrain.jsonl") if r["lang"] != "en" and r["kind"] != "parallel"]
    for r in records:
        assert not _words(r["text"]) & english, r["text"]
    assert _check_english_only_facts_stay_english(world, records) > 20
    fact = next(f for f in world.facts if f.shared)
    assert world.entity_names["ko"][fact.entity] in C.fact_question(world, fact, "ko")
