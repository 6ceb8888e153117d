"""Decontextualisation of BLEnD questions: expected outputs written by hand."""

from pathlib import Path

import pytest

from jaxsteer.data.blend import load_blend
from jaxsteer.data.decontext import context_pair, contextualize, decontextualize, loc_pairs, mentions_country
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"

CASES = [
    # English (BLEnD translations and "your country" templates)
    (
        "en",
        "South_Korea",
        "What is the most popular fruit in South Korea?",
        "What is the most popular fruit?",
    ),
    (
        "en",
        "Spain",
        "What do people from Spain usually eat for dessert?",
        "What do people usually eat for dessert?",
    ),
    (
        "en",
        "China",
        "What is China's most famous traditional dish?",
        "What is the most famous traditional dish?",
    ),
    (
        "en",
        "Greece",
        "What is the most common ingredient used in Greece's diet?",
        "What is the most common ingredient used in the diet?",
    ),
    (
        "en",
        "Iran",
        "At what age do kids start preschool in your country? (Provide Arabic numerals (e.g., 12) only.)",
        "At what age do kids start preschool? (Provide Arabic numerals (e.g., 12) only.)",
    ),
    (
        "en",
        "Indonesia",
        "What sports event has Indonesia won the most gold medals at the Olympics?",
        "What sports event has the country won the most gold medals at the Olympics?",
    ),
    (
        "en",
        "US",
        "What is a common snack for preschool kids in the US?",
        "What is a common snack for preschool kids?",
    ),
    # Chinese
    ("zh", "China", "在中国，学龄前儿童常吃的零食是什么？", "学龄前儿童常吃的零食是什么？"),
    ("zh", "China", "在中国最受欢迎的水果是什么？", "最受欢迎的水果是什么？"),
    ("zh", "China", "中国人早餐通常吃什么？", "人们早餐通常吃什么？"),
    ("zh", "China", "在中国的学校食堂里常见的食物是什么？", "在学校食堂里常见的食物是什么？"),
    ("zh", "China", "中国的义务教育是多少年？", "义务教育是多少年？"),
    ("zh", "China", "人们在中国怎样庆祝圣诞节？", "人们怎样庆祝圣诞节？"),
    ("zh", "China", "在中国拜访年长的父母时，常见的礼物是什么？", "在拜访年长的父母时，常见的礼物是什么？"),
    # Korean (한국식 나이 is not a country mention)
    (
        "ko",
        "South_Korea",
        "대한민국에서 가장 인기 있는 과일은 무엇인가요?",
        "가장 인기 있는 과일은 무엇인가요?",
    ),
    (
        "ko",
        "South_Korea",
        "대한민국의 유치원생들이 흔히 먹는 간식은 무엇인가요?",
        "유치원생들이 흔히 먹는 간식은 무엇인가요?",
    ),
    (
        "ko",
        "South_Korea",
        "한국 사람들은 보통 아침으로 무엇을 먹나요?",
        "사람들은 보통 아침으로 무엇을 먹나요?",
    ),
    (
        "ko",
        "South_Korea",
        "한국인들이 가장 크게 기념하는 명절은 무엇인가요?",
        "사람들이 가장 크게 기념하는 명절은 무엇인가요?",
    ),
    (
        "ko",
        "South_Korea",
        "대한민국이 올림픽에서 가장 많은 금메달을 딴 종목은 무엇인가요?",
        "올림픽에서 가장 많은 금메달을 딴 종목은 무엇인가요?",
    ),
    (
        "ko",
        "South_Korea",
        "당신의 나라에서 부부들은 보통 몇 명의 자녀를 두나요?",
        "부부들은 보통 몇 명의 자녀를 두나요?",
    ),
    (
        "ko",
        "South_Korea",
        "대한민국에서 아이들은 몇 살에 입학하나요? (한국식 나이를 기준으로 답변해주세요.)",
        "아이들은 몇 살에 입학하나요? (한국식 나이를 기준으로 답변해주세요.)",
    ),
    # Spanish
    ("es", "Spain", "¿Cuál es la fruta más popular en España?", "¿Cuál es la fruta más popular?"),
    ("es", "Spain", "¿Qué suelen desayunar los españoles?", "¿Qué suelen desayunar las personas?"),
    (
        "es",
        "Spain",
        "¿Cuál es el plato tradicional más famoso de España?",
        "¿Cuál es el plato tradicional más famoso?",
    ),
    (
        "es",
        "Spain",
        "¿Cuál es el ingrediente más común en la dieta española?",
        "¿Cuál es el ingrediente más común en la dieta?",
    ),
    (
        "es",
        "Spain",
        "¿Cuántos hijos suelen tener las parejas en tu país?",
        "¿Cuántos hijos suelen tener las parejas?",
    ),
    ("es", "Spain", "En España, ¿qué se come en Nochevieja?", "¿Qué se come en Nochevieja?"),
    # Indonesian ("bahasa Indonesia" is the language, not the country)
    ("id", "Indonesia", "Buah apa yang paling populer di Indonesia?", "Buah apa yang paling populer?"),
    (
        "id",
        "Indonesia",
        "Apa yang biasanya dimakan orang Indonesia untuk sarapan?",
        "Apa yang biasanya dimakan orang untuk sarapan?",
    ),
    (
        "id",
        "Indonesia",
        "Apa hidangan tradisional paling terkenal dari Indonesia?",
        "Apa hidangan tradisional paling terkenal?",
    ),
    (
        "id",
        "Indonesia",
        "Di Indonesia, kapan siswa mulai belajar bahasa Indonesia?",
        "Kapan siswa mulai belajar bahasa Indonesia?",
    ),
    # Greek
    (
        "el",
        "Greece",
        "Ποιο είναι το πιο δημοφιλές φρούτο στην Ελλάδα;",
        "Ποιο είναι το πιο δημοφιλές φρούτο;",
    ),
    ("el", "Greece", "Τι τρώνε συνήθως οι Έλληνες για πρωινό;", "Τι τρώνε συνήθως οι άνθρωποι για πρωινό;"),
    (
        "el",
        "Greece",
        "Ποιο είναι το πιο διάσημο παραδοσιακό πιάτο της Ελλάδας;",
        "Ποιο είναι το πιο διάσημο παραδοσιακό πιάτο;",
    ),
    (
        "el",
        "Greece",
        "Τι συνήθως πίνουν οι νέοι από την Ελλάδα στα νυχτερινά κέντρα;",
        "Τι συνήθως πίνουν οι νέοι στα νυχτερινά κέντρα;",
    ),
    (
        "el",
        "Greece",
        "Σε ποιο άθλημα έχει κερδίσει η Ελλάδα τα περισσότερα μετάλλια;",
        "Σε ποιο άθλημα έχει κερδίσει τα περισσότερα μετάλλια;",
    ),
    ("el", "Greece", "Ποιο δώρο δίνεται στην ελληνική κοινωνία;", "Ποιο δώρο δίνεται στην κοινωνία;"),
    # Persian (BLEnD often writes درایران without a space)
    ("fa", "Iran", "محبوب‌ترین میوه درایران چیست؟", "محبوب‌ترین میوه چیست؟"),
    ("fa", "Iran", "در ایران محبوب‌ترین ورزش چیست؟", "محبوب‌ترین ورزش چیست؟"),
    ("fa", "Iran", "دوره آموزش اجباری در کشور شما چند سال است؟", "دوره آموزش اجباری چند سال است؟"),
    ("fa", "Iran", "مردم ایران در روز اول سال نو چه می‌خورند؟", "مردم در روز اول سال نو چه می‌خورند؟"),
    ("fa", "Iran", "ایرانی‌ها معمولاً برای صبحانه چه می‌خورند؟", "مردم معمولاً برای صبحانه چه می‌خورند؟"),
]


@pytest.mark.parametrize(("lang", "country", "question", "expected"), CASES)
def test_decontextualize(lang, country, question, expected):
    assert decontextualize(question, lang, country, strict=True) == expected
    assert not mentions_country(expected, lang, country)


@pytest.mark.parametrize(
    ("lang", "country", "question", "expected"),
    [
        (
            "en",
            "Iran",
            "What is the biggest holiday in your country?",
            "What is the biggest holiday in Iran?",
        ),
        ("en", "Spain", "What is the most popular fruit?", "What is the most popular fruit in Spain?"),
        (
            "en",
            "Greece",
            "How many years is compulsory education? (Provide Arabic numerals (e.g., 12) only.)",
            "How many years is compulsory education in Greece? (Provide Arabic numerals (e.g., 12) only.)",
        ),
        (
            "ko",
            "South_Korea",
            "당신의 나라에서 부부들은 보통 몇 명의 자녀를 두나요?",
            "대한민국에서 부부들은 보통 몇 명의 자녀를 두나요?",
        ),
        (
            "ko",
            "South_Korea",
            "가장 인기 있는 과일은 무엇인가요?",
            "대한민국에서 가장 인기 있는 과일은 무엇인가요?",
        ),
        ("zh", "China", "最受欢迎的水果是什么？", "在中国，最受欢迎的水果是什么？"),
        (
            "es",
            "Spain",
            "¿Cuántos hijos suelen tener las parejas en tu país?",
            "¿Cuántos hijos suelen tener las parejas en España?",
        ),
        ("id", "Indonesia", "Buah apa yang paling populer?", "Buah apa yang paling populer di Indonesia?"),
        (
            "el",
            "Greece",
            "Πόσα χρόνια διαρκεί η εκπαίδευση στη χώρα σας;",
            "Πόσα χρόνια διαρκεί η εκπαίδευση στην Ελλάδα;",
        ),
        (
            "fa",
            "Iran",
            "دوره آموزش اجباری در کشور شما چند سال است؟",
            "دوره آموزش اجباری در ایران چند سال است؟",
        ),
        ("fa", "Iran", "محبوب‌ترین ورزش چیست؟", "در ایران محبوب‌ترین ورزش چیست؟"),
    ],
)
def test_contextualize(lang, country, question, expected):
    assert contextualize(question, lang, country) == expected


def test_strict_raises_when_there_is_nothing_to_remove():
    question = "What is the most popular fruit?"
    assert decontextualize(question, "en", "Spain") == question
    with pytest.raises(DataError, match=r"question 'q1' \(en\) has no mention of Spain"):
        decontextualize(question, "en", "Spain", strict=True, qid="q1")


def test_unsupported_language_and_wrong_country():
    with pytest.raises(DataError, match="no decontextualisation rules for language 'am'"):
        decontextualize("x", "am", "Ethiopia")
    with pytest.raises(DataError, match="is not the country of language 'ko'"):
        decontextualize("x", "ko", "Spain")


def test_loc_pairs_over_fixture_questions():
    for country in ("China", "South_Korea", "Spain", "Indonesia", "Greece", "Iran"):
        qs = load_blend(DATA, country)
        for english in (False, True):
            pairs = loc_pairs(qs, english=english, strict=True)
            assert len(pairs) == len(qs)
            lang = "en" if english else qs[0].lang
            for ctx, dec in pairs:
                assert mentions_country(ctx, lang, country), ctx
                assert not mentions_country(dec, lang, country), dec
                assert ctx != dec
    ko = load_blend(DATA, "South_Korea")
    assert loc_pairs(ko[:1]) == [
        ("대한민국에서 가장 인기 있는 과일은 무엇인가요?", "가장 인기 있는 과일은 무엇인가요?")
    ]
    q19 = next(q for q in ko if q.id == "Fx-fa-19")
    assert context_pair(q19.question_en, "en", "South_Korea")[0].startswith(
        "How many children do couples usually have in South Korea?"
    )
