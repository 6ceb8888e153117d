"""``jaxsteer data check``: the BLEnD preprocessing audit on the fixtures (with real-style hard rows)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from jaxsteer.cli import main
from jaxsteer.data.check import check_blend, check_country, default_countries, format_report
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"


def call(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def test_country_report_counts_skips_rules_and_kept_cues():
    r = check_country(DATA, "China")
    assert (r["lang"], r["questions"], r["scored"]) == ("zh", 30, 27)
    assert r["skipped_ids"] == {
        "no-answer + not-applicable >= 3": ["Fx-ho-11", "Fx-ho-12"],
        "blank question": ["Fx-hd-30"],
    }
    d = r["decontext"]
    assert (d["checked"], d["named"], d["clean"]) == (29, 29, 29)  # the blank question is not checked
    assert d["coverage_pct"] == pytest.approx(100.0)
    assert d["rules"]["origin"] == 3 and d["rules"]["cuisine"] == 1 and d["rules"]["demonym"] == 3
    assert sum(d["rules"].values()) >= d["named"]  # every named question fired at least one rule
    assert d["kept"] == {"Chinese language or script (中文/汉语)": ["Fx-hd-29"]}
    assert d["kept_counts"] == {"Chinese language or script (中文/汉语)": 1} and d["kept_questions"] == 1
    assert r["annotated"] is True
    assert d["residual"] == d["dangling"] == d["no_local_mention"] == []
    iran = check_country(DATA, "fa")["decontext"]
    assert [row["id"] for row in iran["no_local_mention"]] == ["Fx-hd-26"]
    assert iran["no_local_mention"][0]["translation"].endswith("in Iran?")
    assert (iran["named"], iran["clean"]) == (iran["checked"] - 1, iran["checked"])


def test_defects_are_reported_with_the_question(tmp_path):
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    path = tmp_path / "blend" / "questions" / "Greece_questions.csv"
    with open(path, "a", encoding="utf-8") as f:  # a demonym without its article: no rule removes it
        f.write(
            "99,Fx-zz-99,Food,English (US),Τι τρώνε Έλληνες φοιτητές στην Ελλάδα;,What do students eat in Greece?\n"
        )
    d = check_country(tmp_path, "Greece")["decontext"]
    assert d["checked"] == 27 and d["clean"] == 26
    assert [(row["id"], row["left"]) for row in d["residual"]] == [("Fx-zz-99", "Έλληνες")]
    assert d["residual"][0]["decontextualised"] == "Τι τρώνε Έλληνες φοιτητές;"
    assert d["residual"][0]["rules"] == ["preposition"]
    assert d["coverage_pct"] == pytest.approx(100 * 26 / 27)
    text = format_report(check_blend(tmp_path, ["Greece"]))
    assert "Greece: residual 'Έλληνες' in Fx-zz-99" in text


def test_all_countries_by_default_and_totals():
    assert default_countries(DATA) == ["China", "South_Korea", "Spain", "Indonesia", "Greece", "Iran"]
    report = check_blend(DATA)
    t = report["totals"]
    assert t["questions"] == sum(r["questions"] for r in report["countries"]) == 159
    assert t["checked"] == 158 and t["clean"] == 158 and t["min_coverage_pct"] == pytest.approx(100.0)


def test_cli_text_json_and_file(tmp_path):
    rc, out, err = call("data", "check", DATA, "--country", "zh", "--country", "Iran")
    assert rc == 0 and err == ""
    assert out.splitlines()[2].split()[:3] == ["China", "zh", "30"]
    assert "China: skipped 1 (blank question): Fx-hd-30" in out
    assert "Iran: no country mention in Fx-hd-26" in out
    rc, out, _ = call("data", "check", DATA, "--json", "--out", tmp_path / "r" / "check.json")
    report = json.loads(out)
    assert json.loads((tmp_path / "r" / "check.json").read_text(encoding="utf-8")) == report
    assert [r["country"] for r in report["countries"]][:2] == ["China", "South_Korea"]
    assert report["provenance"]["command"] == "jaxsteer data check"
    assert list(tmp_path.joinpath("r").iterdir()) == [tmp_path / "r" / "check.json"]  # no temporary left


def test_cli_fail_under_and_user_mistakes(tmp_path):
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    with open(tmp_path / "blend" / "questions" / "Greece_questions.csv", "a", encoding="utf-8") as f:
        f.write(
            "99,Fx-zz-99,Food,English (US),Τι τρώνε Έλληνες φοιτητές στην Ελλάδα;,What do students eat in Greece?\n"
        )
    rc, _, err = call("data", "check", tmp_path, "--country", "Greece", "--fail-under", "99.5")
    assert rc == 1 and "coverage below 99.5%: Greece 96.3%" in err
    assert call("data", "check", tmp_path, "--country", "Greece", "--fail-under", "95")[0] == 0
    for args, needle in [
        (("data", "check", tmp_path / "nope"), "is not a folder"),
        (("data", "check", tmp_path, "--country", "Atlantis"), "Atlantis_questions"),
        (("data", "check", tmp_path / "blend" / "annotations"), "no BLEnD question files"),
    ]:
        rc, out, err = call(*args)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith("jaxsteer data: error:") and needle in err, err
    with pytest.raises(DataError, match="reads local files"):
        check_blend("nlee0212/BLEnD")


def test_questions_alone_are_audited_without_annotations(tmp_path):
    (tmp_path / "blend" / "questions").mkdir(parents=True)
    for country in ("China", "Greece"):
        name = f"{country}_questions.csv"
        shutil.copy(DATA / "blend" / "questions" / name, tmp_path / "blend" / "questions" / name)
    r = check_country(tmp_path, "China")
    assert (r["annotated"], r["questions"], r["scored"]) == (False, 30, None)
    assert r["skipped_ids"] == {"blank question": ["Fx-hd-30"]}  # the annotator rule needs the annotations
    full = check_country(DATA, "China")["decontext"]
    assert r["decontext"] == {**full, "scored_clean": None}  # the audit reads the questions only
    report = check_blend(tmp_path)
    assert report["totals"]["scored"] is None and report["totals"]["kept_questions"] == 2  # China 1, Greece 1
    text = format_report(report)
    assert "China: no annotation file (China_data.json): only blank questions counted as skipped" in text
    assert "China: kept on purpose in 1, Chinese language or script (中文/汉语): Fx-hd-29" in text
    assert text.splitlines()[2].split() == ["China", "zh", "30", "1", "-", "29", "29", "1", "100.0%"]


def test_the_other_datasets_are_found_and_parsed_or_named(tmp_path):
    """Before a 12B run: Global-MMLU, FLORES and OASST are checked too — found and parsed (rows), missing, or
    the loader's one line (here: an answer outside A–D) — without failing the BLEnD audit."""
    for part in ("blend", "global_mmlu", "oasst1"):
        shutil.copytree(DATA / part, tmp_path / part)
    test = tmp_path / "global_mmlu" / "ko" / "test.csv"
    lines = test.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = next(csv.reader([lines[1]]))
    row[header.index("answer")] = "E"
    lines[1] = ",".join(f'"{c}"' for c in row)
    test.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_blend(tmp_path, ["South_Korea", "Spain"])
    files = {(f["dataset"], f["lang"]): f for f in report["files"]}
    assert files[("Global-MMLU test", "es")]["status"] == "ok" and files[("Global-MMLU test", "es")]["rows"] == 24
    assert (
        files[("Global-MMLU test", "ko")]["status"] == "error"
        and "answer" in files[("Global-MMLU test", "ko")]["detail"]
    )
    assert files[("FLORES dev en→ko", "ko")]["status"] == "missing"
    assert (
        files[("OASST1 (en pairs)", None)]["status"] == "ok" and files[("OpenAssistantXX", None)]["status"] == "missing"
    )
    text = format_report(report)
    assert "Global-MMLU test [ko]: error:" in text and "FLORES dev en→ko: missing:" in text
