"""The languages jaxsteer knows: one table from ISO code to FLORES code, BLEnD country and country names.

Every other module (loaders, prompts, decontextualisation, reports) looks languages up here so that a
language is added in one place. The default six (zh, ko, es, id, el, fa) are PAPER.md's *default* choice;
ar, am and ha are the other languages present in both Global-MMLU and BLEnD. ``en`` has no BLEnD country:
it is the pivot of the EN steering vector.

Country names list the spellings that appear in BLEnD questions and in model answers (e.g. Korean
대한민국/한국/남한); the first entry is the canonical one. ``your_country`` lists the local phrases for
"your country" that BLEnD's English templates use and some translations keep (Persian "کشور شما").
"""

from __future__ import annotations

import dataclasses

from jaxsteer.errors import DataError


@dataclasses.dataclass(frozen=True)
class Language:
    """One language and the country whose culture BLEnD asks about in it."""

    code: str  # ISO 639-1
    name: str  # English name of the language
    native_name: str
    flores: str  # FLORES-200 code, e.g. "kor_Hang"
    blend_country: str | None  # BLEnD file spelling, e.g. "South_Korea"; None for English
    country_en: tuple[str, ...]  # English names of the country, canonical first
    country_local: tuple[str, ...]  # names in the local language, canonical first
    your_country: tuple[str, ...]  # local phrases for "your country", canonical first

    @property
    def country(self) -> str | None:
        """Canonical English country name with spaces (``"South Korea"``), or None for English."""
        return self.country_en[0] if self.country_en else None


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language(
            code="en",
            name="English",
            native_name="English",
            flores="eng_Latn",
            blend_country=None,
            country_en=(),
            country_local=(),
            your_country=("your country", "your own country"),
        ),
        Language(
            code="zh",
            name="Chinese",
            native_name="中文",
            flores="zho_Hans",
            blend_country="China",
            country_en=("China", "People's Republic of China", "PRC", "mainland China"),
            country_local=("中国", "中國", "中华人民共和国", "中華人民共和國"),
            your_country=("你的国家", "您的国家", "你们国家", "你们的国家", "贵国", "你國家"),
        ),
        Language(
            code="ko",
            name="Korean",
            native_name="한국어",
            flores="kor_Hang",
            blend_country="South_Korea",
            country_en=("South Korea", "Republic of Korea", "Korea"),
            country_local=("대한민국", "한국", "남한"),
            your_country=("당신의 나라", "당신 나라", "여러분의 나라", "귀하의 나라"),
        ),
        Language(
            code="es",
            name="Spanish",
            native_name="español",
            flores="spa_Latn",
            blend_country="Spain",
            country_en=("Spain", "Kingdom of Spain"),
            country_local=("España", "Reino de España", "Espana"),
            your_country=("tu país", "su país", "vuestro país"),
        ),
        Language(
            code="id",
            name="Indonesian",
            native_name="Bahasa Indonesia",
            flores="ind_Latn",
            blend_country="Indonesia",
            country_en=("Indonesia", "Republic of Indonesia"),
            country_local=("Indonesia", "Republik Indonesia"),
            your_country=("negara Anda", "negaramu", "negara kamu", "negara kalian"),
        ),
        Language(
            code="el",
            name="Greek",
            native_name="Ελληνικά",
            flores="ell_Grek",
            blend_country="Greece",
            country_en=("Greece", "Hellenic Republic"),
            country_local=("Ελλάδα", "Ελλάδας", "Ελλάς", "Ελλαδα", "Ελλαδας"),
            your_country=("η χώρα σας", "τη χώρα σας", "την χώρα σας", "της χώρας σας", "τη χώρα σου"),
        ),
        Language(
            code="fa",
            name="Persian",
            native_name="فارسی",
            flores="pes_Arab",
            blend_country="Iran",
            country_en=("Iran", "Islamic Republic of Iran"),
            country_local=("ایران", "جمهوری اسلامی ایران"),
            your_country=("کشور شما", "کشورتان", "کشور خودتان", "کشورت"),
        ),
        Language(
            code="ar",
            name="Arabic",
            native_name="العربية",
            flores="arb_Arab",
            blend_country="Algeria",
            country_en=("Algeria",),
            country_local=("الجزائر", "الجزاير"),
            your_country=("بلدك", "بلدكم", "بلادك"),
        ),
        Language(
            code="am",
            name="Amharic",
            native_name="አማርኛ",
            flores="amh_Ethi",
            blend_country="Ethiopia",
            country_en=("Ethiopia",),
            country_local=("ኢትዮጵያ",),
            your_country=("አገርህ", "አገርሽ", "አገርዎ", "ሀገርዎ"),
        ),
        Language(
            code="ha",
            name="Hausa",
            native_name="Hausa",
            flores="hau_Latn",
            blend_country="Northern_Nigeria",
            country_en=("Northern Nigeria", "Nigeria"),
            country_local=("Arewacin Najeriya", "Arewacin Nijeriya", "Najeriya", "Nijeriya"),
            your_country=("ƙasarku", "ƙasarka", "ƙasarki"),
        ),
    )
}

DEFAULT_LANGUAGES: tuple[str, ...] = ("zh", "ko", "es", "id", "el", "fa")
"""PAPER.md's default target languages (each evaluated against English)."""


def language(code: str) -> Language:
    """The :class:`Language` for an ISO code (case-insensitive); unknown codes list the known ones."""
    key = str(code).strip().lower()
    if key not in LANGUAGES:
        raise DataError(f"unknown language {code!r}; known languages: {', '.join(LANGUAGES)}")
    return LANGUAGES[key]


def normalize_country(country: str) -> str:
    """BLEnD's file spelling of a country name: ``"South Korea"`` → ``"South_Korea"``."""
    return "_".join(str(country).strip().split())


def by_country(country: str) -> Language:
    """The language whose BLEnD country is ``country`` (``South_Korea``, ``South Korea`` or ``Korea``)."""
    key = normalize_country(country).lower()
    for lang in LANGUAGES.values():
        names = [lang.blend_country or ""] + [normalize_country(n) for n in lang.country_en]
        if key in (n.lower() for n in names if n):
            return lang
    known = ", ".join(lang.blend_country for lang in LANGUAGES.values() if lang.blend_country)
    raise DataError(f"unknown BLEnD country {country!r}; known countries: {known}")


def by_flores(code: str) -> Language:
    """The language of a FLORES-200 code (``kor_Hang``); ISO codes are accepted too."""
    for lang in LANGUAGES.values():
        if code in (lang.flores, lang.code):
            return lang
    known = ", ".join(lang.flores for lang in LANGUAGES.values())
    raise DataError(f"unknown FLORES code {code!r}; known codes: {known}")


def flores_code(code: str) -> str:
    """FLORES-200 code for an ISO or FLORES code; other well-formed FLORES codes pass through unchanged."""
    if code in LANGUAGES:
        return LANGUAGES[code].flores
    if "_" in code and len(code.split("_")) == 2:
        return code
    return by_flores(code).flores


def blend_country(code_or_country: str) -> str:
    """BLEnD country file name for a language code (``ko`` → ``South_Korea``) or a country name."""
    key = str(code_or_country).strip()
    if key.lower() in LANGUAGES:
        country = LANGUAGES[key.lower()].blend_country
        if country is None:
            raise DataError(f"language {key!r} has no BLEnD country; use one of the target languages")
        return country
    return normalize_country(key)
