"""Decontextualisation of BLEnD questions: expected outputs written by hand."""

from pathlib import Path

import pytest

from jaxsteer.data.blend import load_blend
from jaxsteer.data.decontext import (
    context_pair,
    contextualize,
    decontextualize,
    defects,
    explain,
    loc_pairs,
    mentions_country,
)
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
    # --- defects found on the released files (issue 14); each rule is general, not the one string ---
    # zh: the demonym 中国人民 (not 人们民), 中国人的
    ("zh", "China", "中国人民庆祝国庆节通常会做哪些活动？", "人们庆祝国庆节通常会做哪些活动？"),
    ("zh", "China", "在COVID-19大流行期间，中国人民喜欢哪些运动？", "在COVID-19大流行期间，人们喜欢哪些运动？"),
    ("zh", "China", "中国人的早餐通常喝什么？", "人们的早餐通常喝什么？"),
    # zh: 来自/源自/起源于 + country keep an object
    ("zh", "China", "哪些来自中国的食物在国外最受欢迎？", "哪些来自本地的食物在国外最受欢迎？"),
    ("zh", "China", "哪种食物起源于中国并且可以在世界各地找到？", "哪种食物起源于本地并且可以在世界各地找到？"),
    (
        "zh",
        "China",
        "除了源自中国的食物，哪个国家的食物在中国更受欢迎？",
        "除了源自本地的食物，哪个国家的食物更受欢迎？",
    ),
    # zh: cuisine cues and 在 + country before a noun, a time frame or an adverb
    ("zh", "China", "在中餐里最常用的调料是什么？", "在本地菜里最常用的调料是什么？"),
    ("zh", "China", "在中国天气寒冷时，人们通常会吃些什么食物？", "在天气寒冷时，人们通常会吃些什么食物？"),
    ("zh", "China", "在中国上班族通常几点下班？", "上班族通常几点下班？"),
    ("zh", "China", "在中国人中最受欢迎的足球队是哪一支？", "在人们中最受欢迎的足球队是哪一支？"),
    ("zh", "China", "居住在中国沙漠中的人们的主要职业是什么？", "居住在沙漠中的人们的主要职业是什么？"),
    # ko: 에서의 leaves no orphan 의; the released typo 대힌민국
    ("ko", "South_Korea", "대한민국에서의 학생의 날은 언제인가요?", "학생의 날은 언제인가요?"),
    (
        "ko",
        "South_Korea",
        "일반적으로 라마단 기간 동안 대한민국에서의 근무 시간은 어떻게 되나요?",
        "일반적으로 라마단 기간 동안 근무 시간은 어떻게 되나요?",
    ),
    (
        "ko",
        "South_Korea",
        "대힌민국의 대학생들은 보통 수업을 몇 시간 듣나요?",
        "대학생들은 보통 수업을 몇 시간 듣나요?",
    ),
    ("ko", "South_Korea", "대한밍국 사람들은 설날에 무엇을 먹나요?", "사람들은 설날에 무엇을 먹나요?"),
    # ... but 대한제국 (the Korean Empire) is a word one syllable away, not a typo: kept
    ("ko", "South_Korea", "대한민국에서 대한제국 시대의 음식은 무엇인가요?", "대한제국 시대의 음식은 무엇인가요?"),
    # "for X" prepositions
    (
        "en",
        "Spain",
        "Which country is the biggest rival in soccer for Spain?",
        "Which country is the biggest rival in soccer?",
    ),
    (
        "es",
        "Spain",
        "¿Cuál fue el período económico más catastrófico para España?",
        "¿Cuál fue el período económico más catastrófico?",
    ),
    ("id", "Indonesia", "Apa periode ekonomi paling buruk bagi Indonesia?", "Apa periode ekonomi paling buruk?"),
    (
        "id",
        "Indonesia",
        "Apa hari libur terpenting untuk masyarakat Indonesia?",
        "Apa hari libur terpenting untuk masyarakat?",
    ),
    ("id", "Indonesia", "Apa makanan asal Indonesia yang terkenal?", "Apa makanan yang terkenal?"),
    (
        "el",
        "Greece",
        "Ποια ήταν η πιο καταστροφική οικονομική περίοδος για την Ελλάδα;",
        "Ποια ήταν η πιο καταστροφική οικονομική περίοδος;",
    ),
    ("fa", "Iran", "بدترین دوره اقتصادی برای ایران چه زمانی بود؟", "بدترین دوره اقتصادی چه زمانی بود؟"),
    ("fa", "Iran", "بدترین دوره اقتصادی برای‌ایران چه زمانی بود؟", "بدترین دوره اقتصادی چه زمانی بود؟"),
    # fa: demonym adjectives; a written ezafe gets the neutral "local" instead of an orphaned -ye
    ("fa", "Iran", "دانشجویان ایرانی معمولا کجا درس می‌خوانند؟", "دانشجویان معمولا کجا درس می‌خوانند؟"),
    ("fa", "Iran", "معروف‌ترین غذای ایرانی چیست؟", "معروف‌ترین غذای محلی چیست؟"),
    ("fa", "Iran", "یک وعده غذایی معمول در جشن‌های‌ایران چیست؟", "یک وعده غذایی معمول در جشن‌های محلی چیست؟"),
    ("fa", "Iran", "چه رنگی با تیم ملی فوتبال ایران مرتبط است؟", "چه رنگی با تیم ملی فوتبال مرتبط است؟"),
    # id: "di seluruh" (all over) goes with the name; a verb that needs an object gets "daerah setempat"
    ("id", "Indonesia", "Kapan arus mudik terpadat di seluruh Indonesia?", "Kapan arus mudik terpadat?"),
    (
        "id",
        "Indonesia",
        "Festival musik apa yang paling ramai dari seluruh Indonesia?",
        "Festival musik apa yang paling ramai?",
    ),
    (
        "id",
        "Indonesia",
        "Tarian apa yang paling mewakili Indonesia di acara internasional?",
        "Tarian apa yang paling mewakili daerah setempat di acara internasional?",
    ),
    (  # melahirkan (give birth) stands alone: only the locative goes
        "id",
        "Indonesia",
        "Pada usia berapa perempuan biasanya melahirkan di Indonesia?",
        "Pada usia berapa perempuan biasanya melahirkan?",
    ),
    # el: στην glued onto the word before it; "of Greek origin" keeps an adjective (τοπικής)
    ("el", "Greece", "Πόσα παιδιά έχει μια οικογένειαστην Ελλάδα;", "Πόσα παιδιά έχει μια οικογένεια;"),
    ("el", "Greece", "Ποιο φαγητόστην Ελλάδα τρώγεται το Πάσχα;", "Ποιο φαγητό τρώγεται το Πάσχα;"),
    (
        "el",
        "Greece",
        "Ποια φρούτα ελληνικής προέλευσης εξάγονται περισσότερο;",
        "Ποια φρούτα τοπικής προέλευσης εξάγονται περισσότερο;",
    ),
    # kept on purpose: language names
    (
        "es",
        "Spain",
        "¿Qué idioma se estudia además del español en España?",
        "¿Qué idioma se estudia además del español?",
    ),
    ("es", "Spain", "¿Cuál es el plato español más famoso?", "¿Cuál es el plato más famoso?"),
    (
        "el",
        "Greece",
        "Ποια γλώσσα διδάσκεται εκτός από τα ελληνικά στην Ελλάδα;",
        "Ποια γλώσσα διδάσκεται εκτός από τα ελληνικά;",
    ),
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
    unnamed = []
    for country in ("China", "South_Korea", "Spain", "Indonesia", "Greece", "Iran"):
        qs = load_blend(DATA, country)
        asked = [q for q in qs if not q.blank]  # a blank question has nothing to pair
        for english in (False, True):
            pairs = loc_pairs(qs, english=english, strict=english)
            assert len(pairs) == len(asked) == len(qs) - (country == "China")
            lang = "en" if english else qs[0].lang
            for q, (ctx, dec) in zip(asked, pairs):
                assert mentions_country(ctx, lang, country), ctx
                assert not mentions_country(dec, lang, country), dec
                assert ctx != dec
                result = explain(q.question_en if english else q.question, lang, country)
                assert result.clean, (q.id, result)
                unnamed += [] if result.named else [(country, q.id)]
    # the local text says only "درکشور" (in the country); the English names Iran: kept as it is
    assert unnamed == [("Iran", "Fx-hd-26")]
    ko = load_blend(DATA, "South_Korea")
    assert loc_pairs(ko[:1]) == [
        ("대한민국에서 가장 인기 있는 과일은 무엇인가요?", "가장 인기 있는 과일은 무엇인가요?")
    ]
    q19 = next(q for q in ko if q.id == "Fx-fa-19")
    assert context_pair(q19.question_en, "en", "South_Korea")[0].startswith(
        "How many children do couples usually have in South Korea?"
    )


def test_explain_names_the_rules_and_the_kept_cues():
    r = explain("除了源自中国的食物，哪个国家的食物在中国更受欢迎？", "zh", "China")
    assert r.named and r.clean and r.rules == ("origin", "locative-adverbial")
    r = explain("대한민국에서 학생들은 몇 살에 입학하나요? (한국식 나이를 기준으로 답변해주세요.)", "ko", "South_Korea")
    assert r.rules == ("locative",) and r.kept == ("Korean age or language (한국식/한국어)",)
    r = explain("Selain bahasa Indonesia, bahasa apa yang dipelajari siswa di Indonesia?", "id", "Indonesia")
    assert r.text == "Selain bahasa Indonesia, bahasa apa yang dipelajari siswa?" and r.kept and r.clean
    assert explain("Ποιο φαγητόστην Ελλάδα τρώγεται;", "el", "Greece").rules == ("glued-preposition",)
    assert explain("Ποια γλυκά ελληνικής καταγωγής;", "el", "Greece").rules == ("origin",)
    assert explain("Lagu apa yang mewakili Indonesia?", "id", "Indonesia").rules == ("verb-object",)
    r = explain("What is the most popular fruit?", "en", "Spain")
    assert not r.named and r.rules == () and r.text == "What is the most popular fruit?"


@pytest.mark.parametrize(
    ("lang", "country", "question", "broken", "left"),
    [  # what the previous rules produced: the detectors must see each defect
        ("zh", "China", "中国人民庆祝国庆节做哪些活动？", "人们民庆祝国庆节做哪些活动？", (None, "人们民")),
        ("zh", "China", "哪些来自中国的食物最受欢迎？", "哪些来自食物最受欢迎？", (None, "来自")),
        ("zh", "China", "在中餐里最常用的调料是什么？", "在中餐里最常用的调料是什么？", ("中餐", None)),
        ("zh", "China", "哪个国家的食物在中国更受欢迎？", "哪个国家的食物在更受欢迎？", (None, "在")),
        ("ko", "South_Korea", "대한민국에서의 학생의 날은 언제인가요?", "의 학생의 날은 언제인가요?", (None, "의")),
        (
            "ko",
            "South_Korea",
            "대힌민국의 대학생들은 몇 시간 듣나요?",
            "대힌민국의 대학생들은 몇 시간 듣나요?",
            ("대힌민국", None),
        ),
        (
            "es",
            "Spain",
            "¿Cuál fue el período más duro para España?",
            "¿Cuál fue el período más duro para?",
            (None, "para"),
        ),
        (
            "id",
            "Indonesia",
            "Apa periode paling buruk untuk Indonesia?",
            "Apa periode paling buruk untuk?",
            (None, "untuk"),
        ),
        (
            "el",
            "Greece",
            "Ποια ήταν η χειρότερη περίοδος για την Ελλάδα;",
            "Ποια ήταν η χειρότερη περίοδος για;",
            (None, "για"),
        ),
        ("fa", "Iran", "بدترین دوره برای ایران چه زمانی بود؟", "بدترین دوره برای چه زمانی بود؟", (None, "برای ")),
        ("fa", "Iran", "دانشجویان ایرانی کجا می‌روند؟", "دانشجویان ایرانی کجا می‌روند؟", ("ایرانی", None)),
        ("en", "Spain", "What was the worst period for Spain?", "What was the worst period for?", (None, "for")),
        (
            "id",
            "Indonesia",
            "Kapan arus mudik terpadat di seluruh Indonesia?",
            "Kapan arus mudik terpadat di?",
            (None, "di"),
        ),
        (
            "id",
            "Indonesia",
            "Tarian apa yang paling mewakili Indonesia?",
            "Tarian apa yang paling mewakili?",
            (None, "mewakili"),
        ),
        (
            "el",
            "Greece",
            "Πόσα παιδιά έχει μια οικογένειαστην Ελλάδα;",
            "Πόσα παιδιά έχει μια οικογένειαστην;",
            (None, "στην"),
        ),
        (
            "el",
            "Greece",
            "Ποια φρούτα ελληνικής προέλευσης εξάγονται;",
            "Ποια φρούτα προέλευσης εξάγονται;",
            (None, " προέλευσης"),
        ),
    ],
)
def test_defects_are_detected(lang, country, question, broken, left):
    assert defects(question, broken, lang, country) == left
    assert defects(question, decontextualize(question, lang, country), lang, country) == (None, None)


def test_a_function_word_of_the_original_is_not_a_defect():
    # "برای چه درسی" (for which subject) is in the original: only added orphans count
    q = "درایران دانش‌آموزان برای چه درسی کلاس خصوصی می‌گیرند؟"
    assert decontextualize(q, "fa", "Iran") == "دانش‌آموزان برای چه درسی کلاس خصوصی می‌گیرند؟"
    assert defects(q, decontextualize(q, "fa", "Iran"), "fa", "Iran") == (None, None)
    assert defects("哪些来自日本的食物在中国受欢迎？", "哪些来自日本的食物受欢迎？", "zh", "China") == (None, None)
    # "χώρα προέλευσης" (country of origin) stands in the original: not an orphan of the removed adjective
    q = "Ποια είναι η χώρα προέλευσης της φέτας στην Ελλάδα;"
    assert decontextualize(q, "el", "Greece") == "Ποια είναι η χώρα προέλευσης της φέτας;"
    assert defects(q, decontextualize(q, "el", "Greece"), "el", "Greece") == (None, None)
