"""The language table."""

import pytest

from jaxsteer.data.languages import (
    DEFAULT_LANGUAGES,
    LANGUAGES,
    blend_country,
    by_country,
    by_flores,
    flores_code,
    language,
)
from jaxsteer.errors import DataError


def test_default_languages_have_everything():
    assert DEFAULT_LANGUAGES == ("zh", "ko", "es", "id", "el", "fa")
    expected = {
        "zh": ("zho_Hans", "China"),
        "ko": ("kor_Hang", "South_Korea"),
        "es": ("spa_Latn", "Spain"),
        "id": ("ind_Latn", "Indonesia"),
        "el": ("ell_Grek", "Greece"),
        "fa": ("pes_Arab", "Iran"),
    }
    for code in DEFAULT_LANGUAGES:
        lang = language(code)
        assert (lang.flores, lang.blend_country) == expected[code]
        assert lang.country_local and lang.your_country and lang.country_en
    assert language("EN").flores == "eng_Latn" and language("en").blend_country is None
    assert {c: LANGUAGES[c].blend_country for c in ("ar", "am", "ha")} == {
        "ar": "Algeria",
        "am": "Ethiopia",
        "ha": "Northern_Nigeria",
    }


def test_country_name_variants():
    assert {"대한민국", "한국", "남한"} <= set(language("ko").country_local)
    assert {"中国", "中國"} <= set(language("zh").country_local)
    assert "España" in language("es").country_local and "ایران" in language("fa").country_local
    assert "کشور شما" in language("fa").your_country and "tu país" in language("es").your_country


def test_unknown_language_lists_known_ones():
    with pytest.raises(DataError) as e:
        language("xx")
    assert "unknown language 'xx'" in str(e.value) and "zh, ko, es" in str(e.value)


def test_lookups_by_country_and_flores():
    assert by_country("South Korea").code == "ko" and by_country("south_korea").code == "ko"
    assert by_country("Northern Nigeria").code == "ha"
    assert by_flores("pes_Arab").code == "fa" and flores_code("ko") == "kor_Hang"
    assert blend_country("ko") == "South_Korea" and blend_country("South Korea") == "South_Korea"
    with pytest.raises(DataError, match="unknown BLEnD country 'Atlantis'"):
        by_country("Atlantis")
    with pytest.raises(DataError, match="has no BLEnD country"):
        blend_country("en")
