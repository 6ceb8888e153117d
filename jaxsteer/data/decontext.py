"""Contextualised and decontextualised BLEnD questions: the contrastive pairs of the LOC vector.

BLEnD questions name the country ("What is the most popular fruit in South Korea?", "대한민국에서 가장
인기 있는 과일은 무엇인가요?"); its English templates say "your country". The *decontextualised* query
removes that mention (and "in your country"-style phrases and demonyms such as 中国人 → 人们) while keeping
the sentence grammatical, so that the query language is the only cultural cue — exactly the implicit
setting where aligned models lose culture. The *contextualised* query names the country explicitly.
The LOC vector is mean(h | contextualised) − mean(h | decontextualised) over such pairs.

The rules are ordered, named regular expressions per language (en, zh, ko, es, id, el, fa), written
against the phrasings of BLEnD's released ``data/questions`` files: locatives ("en España", "στην
Ελλάδα", "درایران", "在中国，", "대한민국에서의"), "for X" prepositions ("para España", "untuk Indonesia",
"για την Ελλάδα", "برای ایران"), possessives ("Spain's", "της Ελλάδας"), demonyms ("los españoles",
"中国人民", "ایرانی‌ها") and cultural adjectives ("la dieta española", "دانشجویان ایرانی", "中餐"). A final
rule drops any remaining bare mention (English says "the country" instead: it is not pro-drop). Where
dropping a mention would orphan a grammatical marker that the language writes — a Chinese origin verb
(来自中国的 …), a written Persian ezafe (غذای ایرانی) — the mention becomes the neutral "local" word
(本地, محلی) instead.

Each language also has a *dangling* detector (a preposition or particle left without its object, e.g.
"…para?", "의 학생의 날은") and a list of cues that are deliberately *kept* (language names such as
한국어 or "bahasa Indonesia", 한국식 나이): :func:`explain` reports, per question, which rules fired, what
was kept and whether the result is clean — ``jaxsteer data check`` sums that per country.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from jaxsteer.data.blend import BlendQuestion
from jaxsteer.data.languages import LANGUAGES, Language, by_country, normalize_country
from jaxsteer.errors import DataError

SUPPORTED: tuple[str, ...] = ("en", "zh", "ko", "es", "id", "el", "fa")


class Rule(NamedTuple):
    """One named substitution; ``name`` is what :func:`explain` and ``jaxsteer data check`` report."""

    name: str
    pattern: re.Pattern[str]
    repl: str | Callable[[re.Match[str]], str]


@dataclasses.dataclass(frozen=True)
class LangRules:
    """Everything decontextualisation knows about one (language, country)."""

    rules: tuple[Rule, ...]  # applied in order
    mention: re.Pattern[str]  # the question names the country (or "your country", a demonym, an adjective)
    dangling: re.Pattern[str] | None = None  # a function word the rules may leave without its object
    kept: tuple[tuple[str, re.Pattern[str]], ...] = ()  # cues deliberately left in place, by name


@dataclasses.dataclass(frozen=True)
class Decontext:
    """The decontextualised form of one question and how it was obtained."""

    text: str
    named: bool  # the original named the country (False: returned unchanged)
    rules: tuple[str, ...] = ()  # names of the rules that changed the text, in order
    residual: str | None = None  # a country mention the rules left (a defect)
    dangling: str | None = None  # a function word the rules orphaned (a defect)
    kept: tuple[str, ...] = ()  # names of the deliberately kept cues present in ``text``

    @property
    def clean(self) -> bool:
        """No country mention left and nothing left dangling."""
        return self.residual is None and self.dangling is None


EN_DEMONYMS: dict[str, tuple[str, ...]] = {
    "zh": ("Chinese people",),
    "ko": ("South Koreans", "Koreans", "Korean people"),
    "es": ("Spaniards", "Spanish people"),
    "id": ("Indonesians", "Indonesian people"),
    "el": ("Greeks", "Greek people"),
    "fa": ("Iranians", "Iranian people"),
}

_GREEK_PEOPLE = {
    "οι": "οι άνθρωποι",
    "τους": "τους ανθρώπους",
    "στους": "στους ανθρώπους",
    "των": "των ανθρώπων",
}

# Scripts whose names tolerate one mistyped interior character (a released Korean question says 대힌민국).
# Only syllable-block Hangul: with 11,172 syllables an edit-one variant of 대한민국 is rarely another word,
# whereas Latin and Persian names have real words one letter away (España/espada, ایران/ایوان). The rare
# ones are listed: 대한제국 (the Korean Empire, 1897–1910) is history, not a misspelt country.
_TYPO_LETTERS = {"ko": "[가-힣]"}
_NOT_TYPOS = ("대한제국",)


def _alt(names: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True)) + ")"


def _with_typos(names: Sequence[str], letter: str | None) -> str:
    """``_alt(names)`` plus, for names of ≥ 4 characters, every variant with one interior character changed."""
    variants = [re.escape(n) for n in sorted(set(names), key=len, reverse=True)]
    if letter:
        for n in names:
            if len(n) >= 4 and all(ch.isalpha() for ch in n):
                variants += [re.escape(n[:i]) + letter + re.escape(n[i + 1 :]) for i in range(1, len(n) - 1)]
        words = "|".join(re.escape(w) for w in _NOT_TYPOS)
        return f"(?:(?!{words})(?:{'|'.join(variants)}))"  # a listed real word is not a variant
    return "(?:" + "|".join(variants) + ")"


_I = re.IGNORECASE
_OBJECT = "\ufffc"  # stands for a removed mention when counting dangling words in the original


def _english(home: Language | None, country: str) -> LangRules:
    names = home.country_en if home else (country.replace("_", " "),)
    c = rf"(?:{_alt(names)}|your (?:own )?country)"
    rules: list[Rule] = []
    mention = c
    if home is not None and home.code in EN_DEMONYMS:
        demonyms = _alt(EN_DEMONYMS[home.code])
        rules.append(Rule("demonym", re.compile(rf"\b{demonyms}\b", _I), "people"))
        mention = rf"(?:{c}|{demonyms})"
    prepositions = r"(?:in|within|across|throughout|from|of|at|for)"
    rules += [
        Rule("possessive-society", re.compile(rf"(?:\bthe )?\b{c}'s\s+society\b", _I), "society"),
        Rule("possessive", re.compile(rf"(?:\bthe )?\b{c}'s\b", _I), "the"),
        Rule("preposition", re.compile(rf",?\s*\b{prepositions}\s+(?:the\s+)?{c}\b", _I), ""),
        Rule("subject", re.compile(rf"(?:\bthe )?\b{c}\b", _I), "the country"),  # subject position: not pro-drop
    ]
    dangling = re.compile(r"\b(?:in|within|from|of|at|for|the)\s*(?=[?.,;:)]|$)", _I)
    return LangRules(tuple(rules), re.compile(rf"\b{mention}\b", _I), dangling)


def _korean(home: Language) -> LangRules:
    name = _with_typos(home.country_local[:1], _TYPO_LETTERS["ko"])  # 대한민국 (and 대힌민국)
    c = rf"(?:{name}|남한|한국(?![어식말계])|{_alt(home.your_country)})"  # 한국어/한국식 are not the country
    people = rf"(?:{name}|한국|남한)\s?(?:인|사람|국민)"
    particles = r"(?:에서의|에서는|에서도|에서만|에서|에선|에는|에도|에의|에|의)"  # longest first: no orphan 의
    rules = (
        Rule("demonym", re.compile(rf"{people}들?"), "사람들"),
        Rule("locative", re.compile(rf"{c}\s*(?:사회)?{particles}\s*"), ""),
        Rule("subject-object", re.compile(rf"{c}(?:이|가|은|는|을|를)\s+"), ""),
        Rule("modifier", re.compile(rf"{c}\s+"), ""),
        Rule("bare", re.compile(rf"\s*{c}"), ""),
    )
    # a particle standing alone as a word ("의 학생의 날은"); 이 alone is the demonstrative "this"
    dangling = re.compile(r"(?:^|(?<=\s))(?:의|에서의|에서|에는|에|은|는|가|을|를)(?=\s|[?.,)]|$)")
    kept = (("Korean age or language (한국식/한국어)", re.compile(r"한국(?:식|어|말)|한글")),)
    return LangRules(rules, re.compile(rf"{c}|{people}"), dangling, kept)


def _chinese(home: Language) -> LangRules:
    c = rf"(?:{_alt(home.country_local)}|{_alt(home.your_country)})"
    # 在中国 + an adverb or question word: the locative phrase goes whole
    adverbial = (
        r"(?=最|第|怎|如何|通常|一般|都|有|哪|什么|是|人们|更|比较|经常|常|很|非常|也|还|会|能|可以|被|"
        r"大多数|多数|大部分|主要|普遍|谁|几|多少|为什么|为何|，|,)"
    )
    origin = r"(来自|源自|起源于|原产于|产自|出自)"  # their object cannot be dropped: 来自中国的 → 来自本地的
    cuisine = r"(?:中餐|中国菜|中华料理|中华菜)"
    rules = (
        Rule("locative-comma", re.compile(rf"在{c}的?(?:社会)?[中里]?[，,]\s*"), ""),
        Rule("origin", re.compile(rf"{origin}\s*{c}"), r"\1本地"),
        Rule("cuisine", re.compile(cuisine), "本地菜"),
        Rule("style", re.compile(r"中式"), ""),
        Rule("demonym", re.compile(rf"{c}(?:人民|民众|国民|公民|人)|华人"), "人们"),  # 中国人民 before 中国人
        Rule("people-in", re.compile(rf"人们在{c}"), "人们"),
        Rule("locative-de", re.compile(rf"在{c}的"), "在"),
        Rule("locative-adverbial", re.compile(rf"在{c}{adverbial}"), ""),
        Rule("locative-verb", re.compile(rf"(?<=[住活])在{c}"), "在"),  # 居住在/生活在中国 → 居住在/生活在
        # 在中国烧烤时 → 在烧烤时: a time frame closing in the same clause keeps its 在
        Rule("locative-frame", re.compile(rf"在{c}(?=[^，,。？?！!；;（(]*?(?:时(?!间)|期间|之际))"), "在"),
        Rule("locative", re.compile(rf"在{c}"), ""),  # 在中国学校里 → 学校里: Chinese needs no 在 here
        Rule("possessive", re.compile(rf"{c}的"), ""),
        Rule("bare", re.compile(c), ""),
    )
    dangling = re.compile(
        rf"在(?=[，,。？?、！!；;]|$|最|更|通常|一般)|{origin}(?!本地|{_OBJECT})|人们民|^的|的的|^[，,、]"
    )
    kept = (("Chinese language or script (中文/汉语)", re.compile(r"中文|汉语|普通话|汉字")),)
    mention = re.compile(rf"{c}|{cuisine}|中式|华人")
    return LangRules(rules, mention, dangling, kept)


def _spanish(home: Language) -> LangRules:
    c = rf"(?:{_alt(home.country_local)}|{_alt(home.your_country)})"
    language = r"(?<!\bel)(?<!\ben)(?<!\bal)(?<!\bdel)"  # el/en/al/del español: the language, kept
    prepositions = r"(?:en|de|para|por|desde|hacia|a|contra|dentro de|por todo|por toda|en todo|en toda)"
    rules = (
        Rule("demonym", re.compile(r"\b(?:los|las)\s+español(?:es|as)\b", _I), "las personas"),
        Rule("adjective", re.compile(rf"{language}\s+español(?:a|es|as)?\b", _I), ""),
        Rule("preposition", re.compile(rf",?\s*\b{prepositions}\s+{c}(?!\w)", _I), ""),
        Rule("bare", re.compile(rf"\s*\b{c}(?!\w)", _I), ""),
    )
    dangling = re.compile(r"\b(?:en|de|del|para|por|desde|hacia|a|contra|entre)\s*(?=[?¿,.;)]|$)", _I)
    kept = (("Spanish language (el español)", re.compile(r"\b(?:el|en|al|del)\s+español\b", _I)),)
    mention = re.compile(rf"\b{c}(?!\w)|(?<!\bel )(?<!\ben )(?<!\bal )(?<!\bdel )\bespañol(?:a|es|as)?\b", _I)
    return LangRules(rules, mention, dangling, kept)


def _indonesian(home: Language) -> LangRules:
    n = rf"(?<!bahasa ){_alt(home.country_local)}"  # "bahasa Indonesia" is the language
    c = rf"(?:{n}|{_alt(home.your_country)})"
    # "di seluruh Indonesia" (all over Indonesia) goes whole; not khas: "makanan khas" stands
    prepositions = r"(?:(?:di|ke|dari)\s+seluruh|di|dari|ke|dalam|seluruh|untuk|bagi|oleh|tentang|asal)"
    # verbs that need an object (not melahirkan "give birth", which stands alone): the country was it
    transitive = r"\b(?:mewakili|mengunjungi|meninggalkan|mengekspor|mengimpor|membela)"
    rules = (
        Rule(
            "demonym",
            re.compile(rf"\b(orang(?:-orang)?|masyarakat|warga|penduduk|rakyat|bangsa)\s+{n}\b", _I),
            r"\1",
        ),
        Rule("verb-object", re.compile(rf"({transitive})\s+{c}\b", _I), r"\1 daerah setempat"),
        Rule("preposition", re.compile(rf",?\s*\b{prepositions}\s+{c}\b", _I), ""),
        Rule("bare", re.compile(rf"\s*\b{c}\b", _I), ""),
    )
    dangling = re.compile(rf"(?:\b{prepositions}|{transitive})\s*(?=[?,.;)]|$)", _I)
    kept = (("Indonesian language (bahasa Indonesia)", re.compile(r"\bbahasa Indonesia\b", _I)),)
    return LangRules(rules, re.compile(rf"\b{c}\b", _I), dangling, kept)


def _greek(home: Language) -> LangRules:
    n = _alt(home.country_local)
    your = r"(?:η|τη|την|της|στη|στην)\s+χώρας?\s+(?:σας|σου)"
    language = r"(?<!\bτα)(?<!\bστα)"  # τα/στα ελληνικά: the language, kept
    prepositions = r"(?:στην|στη|σε|από την|από τη|μέσα στην|εντός της|σε όλη την|για την|για τη|προς την|προς τη)"
    rules = (
        Rule(
            "demonym",
            re.compile(r"\b(οι|τους|στους|των)\s+(?:Έλληνες|Ελλήνων|Έλληνας)\b", _I),
            lambda m: _GREEK_PEOPLE[m.group(1).lower()],
        ),
        # φαγητά ελληνικής προέλευσης: "of origin" needs its qualifier, so the adjective becomes "local"
        Rule("origin", re.compile(r"\bελληνικ(?:ής|ης)\s+(προέλευσης|καταγωγής)\b", _I), r"τοπικής \1"),
        Rule("adjective", re.compile(rf"{language}\s+ελληνικ(?:ή|ό|ός|ές|ά|ής|ού|ών|οί|ούς|ήν)\b", _I), ""),
        Rule("your-country", re.compile(rf",?\s*\b(?:από\s+)?{your}\b", _I), ""),
        # BLEnD glues στην onto the previous word (πληθυσμόστην Ελλάδα): it goes with the name
        Rule("glued-preposition", re.compile(rf"(?<=[^\W\d_])στην?\s+{n}(?!\w)", _I), ""),
        Rule("preposition", re.compile(rf",?\s*\b{prepositions}\s+{n}(?!\w)", _I), ""),
        Rule("article", re.compile(rf"\s*\b(?:της|η|την|τη)\s+{n}(?!\w)", _I), ""),
        Rule("bare", re.compile(rf"\s*\b{n}(?!\w)", _I), ""),
    )
    dangling = re.compile(
        r"\b(?:στην|στη|σε|της|για|από|προς|την|τη|η|των)\s*(?=[;;,.)]|$)"
        r"|(?<=[^\W\d_])στην(?=\s*[;;,.)]|$)"  # a glued στην left at the end
        r"|(?<=[^\W\d_])(?<!ής)(?<!ης)\s+(?:προέλευσης|καταγωγής)\b",  # "of origin" with no adjective
        _I,
    )
    kept = (("Greek language (τα ελληνικά)", re.compile(r"\b(?:τα|στα)\s+ελληνικά\b", _I)),)
    mention = re.compile(rf"\b(?:{n}|{your}|Έλληνες|Ελλήνων)(?!\w)|(?<!\bτα )(?<!\bστα )\bελληνικ\w+", _I)
    return LangRules(rules, mention, dangling, kept)


def _persian(home: Language) -> LangRules:
    c = rf"(?:جمهوری اسلامی ایران|ایران(?!ی)|{_alt(home.your_country)})"  # ایرانی: adjective/demonym
    people = r"ایرانی(?:\u200c|\s)?(?:ها|ان)"
    adjective = r"(?<!\w)ایرانی(?![\w\u200c])"
    # a written ezafe (غذای, بازی‌های, خانه‌ی) would be orphaned by dropping its complement: say "local"
    ezafe = r"(?:(?<=[او]ی)|(?<=ه\u200cی))"
    rules = (
        Rule("demonym", re.compile(rf"(?:مردم|مردمان)\s+{c}|{people}"), "مردم"),
        Rule("preposition", re.compile(rf"\s*(?<!\w)(?:در|از|به|برای|درباره‌ی|درباره)\s*\u200c?{c}"), ""),
        Rule("ezafe", re.compile(rf"{ezafe}\s*\u200c?(?:{c}|{adjective})"), " محلی"),
        Rule("adjective", re.compile(rf"\s*{adjective}"), ""),
        Rule("bare", re.compile(rf"\s*{c}"), ""),  # BLEnD often glues the name on: مدارسایران
    )
    dangling = re.compile(r"(?<!\w)(?:در|از|به|برای)\s*(?=[؟?،,.)]|$|چه|کجا|کدام|چند)")
    kept = (("Persian language (فارسی)", re.compile(r"(?<!\w)فارسی(?!\w)")),)
    return LangRules(rules, re.compile(rf"{c}|{people}|{adjective}"), dangling, kept)


_LOCAL_RULES: dict[str, Callable[[Language], LangRules]] = {
    "zh": _chinese,
    "ko": _korean,
    "es": _spanish,
    "id": _indonesian,
    "el": _greek,
    "fa": _persian,
}


@functools.cache
def _rules(lang: str, country: str) -> LangRules:
    """The rules for questions in ``lang`` about ``country``."""
    if lang not in SUPPORTED:
        raise DataError(f"no decontextualisation rules for language {lang!r}; supported: {', '.join(SUPPORTED)}")
    try:
        home: Language | None = by_country(country)
    except DataError:
        if lang != "en":
            raise
        home = None
    if lang == "en":
        return _english(home, country)
    if home is None or home.code != lang:
        raise DataError(f"BLEnD country {country!r} is not the country of language {lang!r}")
    return _LOCAL_RULES[lang](home)


def _cleanup(text: str, lang: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([?？;;؟,，、。.!！:：)\]])", r"\1", text)
    text = re.sub(r"([(¿¡])\s+", r"\1", text)
    text = re.sub(r"^([¿¡]?)[\s,，、،:;]+", r"\1", text)
    text = re.sub(r"[,，、،]\s*([?？;;؟])", r"\1", text)
    if lang == "en":
        text = re.sub(r"\bthe the\b", "the", text, flags=re.IGNORECASE)
    if lang in ("en", "es", "id", "el"):
        m = re.search(r"\w", text)
        if m and m.group().islower():
            text = text[: m.start()] + m.group().upper() + text[m.end() :]
    return text


def mentions_country(question: str, lang: str, country: str) -> bool:
    """True when ``question`` names ``country`` (or says "your country", or uses a demonym)."""
    return _rules(lang, normalize_country(country)).mention.search(question) is not None


def explain(question: str, lang: str, country: str) -> Decontext:
    """The decontextualised ``question`` with the rules that fired and what is left (see :class:`Decontext`)."""
    lr = _rules(lang, normalize_country(country))
    kept = tuple(name for name, pattern in lr.kept if pattern.search(question))
    if lr.mention.search(question) is None:
        return Decontext(question, named=False, kept=kept)
    text, fired = question, []
    for rule in lr.rules:
        changed = rule.pattern.sub(rule.repl, text)
        if changed != text:
            fired.append(rule.name)
            text = changed
    text = _cleanup(text, lang)
    residual, dangling = defects(question, text, lang, country)
    return Decontext(
        text,
        named=True,
        rules=tuple(fired),
        residual=residual,
        dangling=dangling,
        kept=tuple(name for name, pattern in lr.kept if pattern.search(text)),
    )


def defects(question: str, decontextualised: str, lang: str, country: str) -> tuple[str | None, str | None]:
    """(country mention left, function word orphaned) in a decontextualised ``question``; None when fine.

    Works on any decontextualised text (ours, or a shipped ``blend/decontext`` file). A dangling word
    counts only when the text has more of them than the original with its mentions blanked out: the
    original may legitimately say "برای چه" ("for what"); the rules must not add one ("برای ایران چه" →
    "برای چه"), nor leave 来自 without the object 中国 had been.
    """
    lr = _rules(lang, normalize_country(country))
    residual = lr.mention.search(decontextualised)
    dangling = None
    if lr.dangling is not None:
        left = [m.group() for m in lr.dangling.finditer(decontextualised)]
        before = lr.mention.sub(_OBJECT, question)  # the country was the object of its function word
        if len(left) > sum(1 for _ in lr.dangling.finditer(before)):
            dangling = left[-1]
    return (residual.group() if residual else None), dangling


def decontextualize(question: str, lang: str, country: str, *, strict: bool = False, qid: str = "") -> str:
    """``question`` without its country mention; unchanged when there is none (``strict``: DataError)."""
    result = explain(question, lang, country)
    if not result.named and strict:
        name = f"question {qid!r} " if qid else "question "
        raise DataError(f"{name}({lang}) has no mention of {country} or 'your country' to remove: {question!r}")
    return result.text


_LOCATIVE_SUFFIX = {"en": " in {}", "es": " en {}", "id": " di {}", "el": " στην {}"}
_LOCATIVE_PREFIX = {"ko": "{}에서 ", "zh": "在{}，", "fa": "در {} "}
_YOUR_COUNTRY_FORMS = {  # (pattern, replacement template with {} = local country name)
    "el": (
        (r"\bστην?\s+χώρα\s+(?:σας|σου)\b", "στην {}"),
        (r"\bτην?\s+χώρα\s+(?:σας|σου)\b", "την {}"),
        (r"\bτης\s+χώρας\s+(?:σας|σου)\b", "της {}ς"),
        (r"\bη\s+χώρα\s+(?:σας|σου)\b", "η {}"),
    ),
}
_KO_PARTICLES = (("는", "은"), ("가", "이"), ("를", "을"), ("와", "과"), ("로", "으로"))


def contextualize(question: str, lang: str, country: str) -> str:
    """``question`` naming ``country`` explicitly: "your country" phrases replaced, or a locative added."""
    country = normalize_country(country)
    _rules(lang, country)  # validates lang/country
    home = by_country(country) if lang != "en" else None
    name = home.country_local[0] if home else _english_name(country)
    text = question
    if lang == "en":
        text = re.sub(r"\byour (?:own )?country's\b", f"{name}'s", text, flags=re.IGNORECASE)
        text = re.sub(r"\byour (?:own )?country\b", name, text, flags=re.IGNORECASE)
    else:
        for pattern, template in _YOUR_COUNTRY_FORMS.get(lang, ()):
            text = re.sub(pattern, template.format(name), text, flags=re.IGNORECASE)
        assert home is not None
        text = re.sub(_alt(home.your_country), name, text)
        if lang == "ko":
            for vowel_form, consonant_form in _KO_PARTICLES:
                text = re.sub(f"{re.escape(name)}{vowel_form}(?=\\s)", name + consonant_form, text)
    if mentions_country(text, lang, country):
        return text
    if lang in _LOCATIVE_PREFIX:
        return _LOCATIVE_PREFIX[lang].format(name) + text.strip()
    m = re.search(r"[?;;]", text)
    at = m.start() if m else len(text.rstrip())
    return text[:at].rstrip() + _LOCATIVE_SUFFIX[lang].format(name) + text[at:]


def context_pair(question: str, lang: str, country: str, *, strict: bool = False, qid: str = "") -> tuple[str, str]:
    """(contextualised, decontextualised) versions of one question."""
    return contextualize(question, lang, country), decontextualize(question, lang, country, strict=strict, qid=qid)


def loc_pairs(
    questions: Sequence[BlendQuestion], *, english: bool = False, strict: bool = False
) -> list[tuple[str, str]]:
    """LOC-vector pairs for BLEnD questions, in the local language (default) or in English.

    Questions whose local text is blank are left out (there is nothing to contextualise).
    """
    out = []
    for q in questions:
        if q.blank:
            continue
        lang = "en" if english else q.lang
        if lang is None:
            raise DataError(f"BLEnD question {q.id!r} of {q.country} has no known local language")
        text = q.question_en if english else q.question
        out.append(context_pair(text, lang, q.country, strict=strict, qid=q.id))
    return out


def _english_name(country: str) -> str:
    for lang in LANGUAGES.values():
        if lang.blend_country == country:
            return lang.country_en[0]
    return {"US": "the US", "UK": "the UK"}.get(country, country.replace("_", " "))
