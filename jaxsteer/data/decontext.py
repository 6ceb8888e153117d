"""Contextualised and decontextualised BLEnD questions: the contrastive pairs of the LOC vector.

BLEnD questions name the country ("What is the most popular fruit in South Korea?", "대한민국에서 가장
인기 있는 과일은 무엇인가요?"); its English templates say "your country". The *decontextualised* query
removes that mention (and "in your country"-style phrases and demonyms such as 中国人 → 人们) while keeping
the sentence grammatical, so that the query language is the only cultural cue — exactly the implicit
setting where aligned models lose culture. The *contextualised* query names the country explicitly.
The LOC vector is mean(h | contextualised) − mean(h | decontextualised) over such pairs.

The rules are ordered regular expressions per language (en, zh, ko, es, id, el, fa), written against
the phrasings found in BLEnD's translated questions (locatives such as "en España", "στην Ελλάδα",
"درایران", "在中国，", possessives such as "Spain's", "της Ελλάδας", demonyms such as "los españoles").
A final rule drops any remaining bare mention (English says "the country" instead: it is not pro-drop).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from jaxsteer.data.blend import BlendQuestion
from jaxsteer.data.languages import LANGUAGES, Language, by_country, normalize_country
from jaxsteer.errors import DataError

SUPPORTED: tuple[str, ...] = ("en", "zh", "ko", "es", "id", "el", "fa")

Rule = tuple["re.Pattern[str]", "str | Callable[[re.Match[str]], str]"]

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


def _alt(names: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True)) + ")"


Rules = tuple[tuple[Rule, ...], "re.Pattern[str]"]  # (ordered substitutions, mention detector)
_I = re.IGNORECASE


def _english(home: Language | None, country: str) -> Rules:
    names = home.country_en if home else (country.replace("_", " "),)
    c = rf"(?:{_alt(names)}|your (?:own )?country)"
    rules: list[Rule] = []
    mention = c
    if home is not None and home.code in EN_DEMONYMS:
        demonyms = _alt(EN_DEMONYMS[home.code])
        rules.append((re.compile(rf"\b{demonyms}\b", _I), "people"))
        mention = rf"(?:{c}|{demonyms})"
    rules += [
        (re.compile(rf"(?:\bthe )?\b{c}'s\s+society\b", _I), "society"),
        (re.compile(rf"(?:\bthe )?\b{c}'s\b", _I), "the"),
        (re.compile(rf",?\s*\b(?:in|within|across|throughout|from|of|at)\s+(?:the\s+)?{c}\b", _I), ""),
        (re.compile(rf"(?:\bthe )?\b{c}\b", _I), "the country"),  # subject position: not pro-drop
    ]
    return tuple(rules), re.compile(rf"\b{mention}\b", _I)


def _korean(home: Language) -> Rules:
    c = rf"(?:대한민국|남한|한국(?![어식말계])|{_alt(home.your_country)})"  # 한국어/한국식 are not the country
    people = r"(?:대한민국|한국|남한)\s?(?:인|사람|국민)"
    rules = (
        (re.compile(rf"{people}들?"), "사람들"),
        (re.compile(rf"{c}\s*(?:사회)?(?:에서는|에서도|에서|에선|에는|에도|에|의)\s*"), ""),
        (re.compile(rf"{c}(?:이|가|은|는|을|를)\s+"), ""),
        (re.compile(rf"{c}\s+"), ""),
        (re.compile(rf"\s*{c}"), ""),
    )
    return rules, re.compile(rf"{c}|{people}")


def _chinese(home: Language) -> Rules:
    c = rf"(?:{_alt(home.country_local)}|{_alt(home.your_country)})"
    adverbial = r"(?=最|第|怎|如何|通常|一般|都|有|哪|什么|是|人们|，|,)"  # 在中国 + these: drop 在 too
    rules = (
        (re.compile(rf"在{c}的?(?:社会)?[中里]?[，,]\s*"), ""),
        (re.compile(rf"{c}人"), "人们"),
        (re.compile(rf"人们在{c}"), "人们"),
        (re.compile(rf"在{c}的"), "在"),
        (re.compile(rf"在{c}{adverbial}"), ""),
        (re.compile(rf"在{c}"), "在"),
        (re.compile(rf"{c}的"), ""),
        (re.compile(c), ""),
    )
    return rules, re.compile(c)


def _spanish(home: Language) -> Rules:
    c = rf"(?:{_alt(home.country_local)}|{_alt(home.your_country)})"
    rules = (
        (re.compile(r"\b(?:los|las)\s+español(?:es|as)\b", _I), "las personas"),
        (re.compile(r"(?<!\bel)(?<!\ben)\s+español(?:a|es|as)?\b", _I), ""),  # adjective, not the language
        (re.compile(rf",?\s*\b(?:en|de|dentro de|por todo|por toda)\s+{c}(?!\w)", _I), ""),
        (re.compile(rf"\s*\b{c}(?!\w)", _I), ""),
    )
    return rules, re.compile(rf"\b{c}(?!\w)|\bespañol(?:a|es|as)\b", _I)


def _indonesian(home: Language) -> Rules:
    n = rf"(?<!bahasa ){_alt(home.country_local)}"  # "bahasa Indonesia" is the language
    c = rf"(?:{n}|{_alt(home.your_country)})"
    rules = (
        (re.compile(rf"\b(orang(?:-orang)?|masyarakat|warga|penduduk|rakyat|bangsa)\s+{n}\b", _I), r"\1"),
        (re.compile(rf",?\s*\b(?:di|dari|ke|dalam|seluruh)\s+{c}\b", _I), ""),
        (re.compile(rf"\s*\b{c}\b", _I), ""),
    )
    return rules, re.compile(rf"\b{c}\b", _I)


def _greek(home: Language) -> Rules:
    n = _alt(home.country_local)
    your = r"(?:η|τη|την|της|στη|στην)\s+χώρας?\s+(?:σας|σου)"
    rules = (
        (
            re.compile(r"\b(οι|τους|στους|των)\s+(?:Έλληνες|Ελλήνων|Έλληνας)\b", _I),
            lambda m: _GREEK_PEOPLE[m.group(1).lower()],
        ),
        (re.compile(r"\s+ελληνικ(?:ή|ό|ός|ές|ά|ής|ού|ών|οί|ούς|ήν)\b", _I), ""),
        (re.compile(rf",?\s*\b(?:από\s+)?{your}\b", _I), ""),
        (
            re.compile(rf",?\s*\b(?:στην|στη|σε|από την|από τη|μέσα στην|εντός της|σε όλη την)\s+{n}(?!\w)", _I),
            "",
        ),
        (re.compile(rf"\s*\b(?:της|η|την|τη)\s+{n}(?!\w)", _I), ""),
        (re.compile(rf"\s*\b{n}(?!\w)", _I), ""),
    )
    return rules, re.compile(rf"\b(?:{n}|{your}|Έλληνες|Ελλήνων|ελληνικ\w+)(?!\w)", _I)


def _persian(home: Language) -> Rules:
    c = rf"(?:جمهوری اسلامی ایران|ایران(?!ی)|{_alt(home.your_country)})"  # ایرانی: adjective/demonym
    people = r"ایرانی(?:\u200c|\s)?(?:ها|ان)"
    rules = (
        (re.compile(rf"(?:مردم|مردمان)\s+ایران(?!ی)|{people}"), "مردم"),
        (re.compile(rf"\s*(?<!\w)(?:در|از|به)\s*\u200c?{c}"), ""),  # BLEnD often writes درایران
        (re.compile(rf"\s*{c}"), ""),
    )
    return rules, re.compile(rf"{c}|{people}")


_LOCAL_RULES: dict[str, Callable[[Language], Rules]] = {
    "zh": _chinese,
    "ko": _korean,
    "es": _spanish,
    "id": _indonesian,
    "el": _greek,
    "fa": _persian,
}


@functools.cache
def _rules(lang: str, country: str) -> Rules:
    """(ordered substitution rules, mention detector) for questions in ``lang`` about ``country``."""
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
    return _rules(lang, normalize_country(country))[1].search(question) is not None


def decontextualize(question: str, lang: str, country: str, *, strict: bool = False, qid: str = "") -> str:
    """``question`` without its country mention; unchanged when there is none (``strict``: DataError)."""
    rules, mention = _rules(lang, normalize_country(country))
    if mention.search(question) is None:
        if strict:
            name = f"question {qid!r} " if qid else "question "
            raise DataError(f"{name}({lang}) has no mention of {country} or 'your country' to remove: {question!r}")
        return question
    text = question
    for pattern, repl in rules:
        text = pattern.sub(repl, text)
    return _cleanup(text, lang)


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
    """LOC-vector pairs for BLEnD questions, in the local language (default) or in English."""
    out = []
    for q in questions:
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
