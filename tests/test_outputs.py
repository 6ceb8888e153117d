"""Output locations checked before work, and the manifest that says what wrote a results folder."""

from __future__ import annotations

import json
import os

import pytest

from jaxsteer.errors import ConfigError
from jaxsteer.outputs import MANIFEST, ResultsFolder, check_output_file, check_output_folder, read_manifest

A = {"model": "/models/a", "config_hash": "aaaa", "seed": 0}
B = {"model": "/models/b", "config_hash": "bbbb", "seed": 0}


def tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def unwritable_folder(tmp_path) -> str:
    """A folder no file can be made in: a 0500 folder, or (as root, whom modes do not stop) a /proc entry."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return str(folder)
    (folder / "probe").unlink()
    if os.path.isdir("/proc/1") and not os.access("/proc/1", os.W_OK):
        return "/proc/1"
    pytest.skip("no unwritable folder available to this user")


# --- output locations -----------------------------------------------------------------------------
def test_an_existing_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*f is a file, not a folder"):
        check_output_folder(tmp_path / "f")


def test_a_folder_under_a_file_cannot_be_made(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"f is a file, so no folder can be made under it"):
        check_output_folder(tmp_path / "f" / "sub" / "out")
    with pytest.raises(ConfigError, match=r"f is a file, so .* cannot be written"):
        check_output_file(tmp_path / "f" / "report.json")


def test_an_unwritable_location_is_refused(tmp_path):
    locked = unwritable_folder(tmp_path)
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_folder(os.path.join(locked, "out"))
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_file(os.path.join(locked, "report.json"))


def test_checks_create_nothing_and_accept_what_can_be_written(tmp_path):
    assert check_output_folder(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert check_output_file(tmp_path / "c" / "r.json", "--out") == str(tmp_path / "c" / "r.json")
    with pytest.raises(ConfigError, match="is a folder; expected a file name"):
        check_output_file(tmp_path)
    assert os.listdir(tmp_path) == []  # the write probe is gone too


# --- the manifest ----------------------------------------------------------------------------------
def write(folder: ResultsFolder, stage: str, *names: str) -> None:
    paths = []
    for name in names:
        path = os.path.join(folder.path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(stage)
        paths.append(path)
    folder.finish(stage, paths)


def test_the_same_writer_adds_to_its_folder_and_another_is_refused(tmp_path):
    out = tmp_path / "res"
    write(ResultsFolder.claim(out, A), "eval:base", "base.gmmlu.json")
    write(ResultsFolder.claim(out, dict(A)), "eval:EN", "EN.gmmlu.json")
    record = read_manifest(str(out))
    assert record["writer"] == A and list(record["stages"]) == ["eval:base", "eval:EN"]
    assert record["stages"]["eval:EN"]["files"] == ["EN.gmmlu.json"]
    with pytest.raises(ConfigError, match=r"holds results of model /models/a.*this is model /models/b.*--overwrite"):
        ResultsFolder.claim(out, B)
    with pytest.raises(ConfigError, match="seed 1"):
        ResultsFolder.claim(out, {**A, "seed": 1})
    assert tree(out) == sorted(["EN.gmmlu.json", MANIFEST, "base.gmmlu.json"])


def test_overwrite_moves_every_listed_file_aside_together(tmp_path):
    out = tmp_path / "res"
    first = ResultsFolder.claim(out, A)
    write(first, "eval:base", "base.gmmlu.json", "vectors/base/en_zh.safetensors")
    (out / "notes.txt").write_text("mine")  # not jaxsteer's: stays where it is
    second = ResultsFolder.claim(out, B, overwrite=True)
    aside = [n for n in os.listdir(out) if n.startswith("replaced-")]
    assert len(aside) == 1
    assert tree(out / aside[0]) == sorted([MANIFEST, "base.gmmlu.json", "vectors/base/en_zh.safetensors"])
    assert sorted(os.listdir(out)) == sorted([aside[0], "notes.txt"])  # the emptied vectors/ is gone too
    write(second, "eval:base", "base.gmmlu.json")
    assert read_manifest(str(out))["writer"] == B


def test_an_interrupted_move_is_finished_by_the_next_claim(tmp_path):
    out = tmp_path / "res"
    write(ResultsFolder.claim(out, A), "eval:base", "base.gmmlu.json", "base.blend.json")
    # as if cut short after its first rename: the plan is written, one of three files moved
    staging = out / ".replacing-20250101-000000-000000"
    staging.mkdir()
    (staging / ".moving.json").write_text(json.dumps(["base.gmmlu.json", "base.blend.json", MANIFEST]))
    os.replace(out / "base.gmmlu.json", staging / "base.gmmlu.json")
    # the next claim completes the move first: then nothing of A's is left to clash with
    ResultsFolder.claim(out, B, planned_files=["base.blend.json"])
    assert sorted(os.listdir(out)) == ["replaced-20250101-000000-000000"]
    assert tree(out / "replaced-20250101-000000-000000") == sorted([MANIFEST, "base.blend.json", "base.gmmlu.json"])


def test_files_without_a_manifest_are_not_overwritten_silently(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "base.gmmlu.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"already holds base.gmmlu.json .*no manifest.json.*--overwrite"):
        ResultsFolder.claim(out, A, planned_files=["base.gmmlu.json", "base.csv"])
    ResultsFolder.claim(out, A, planned_files=["base.gmmlu.json"], overwrite=True)
    assert not (out / "base.gmmlu.json").exists()
    assert [n for n in os.listdir(out) if n.startswith("replaced-")]


def test_a_run_folder_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    stages = ["eval:base", "comparison"]
    with pytest.raises(ConfigError, match="holds no manifest.json, so there is no run to continue"):
        ResultsFolder.claim(out, A, resume=True, planned_stages=stages)
    run = ResultsFolder.claim(out, A, resume=False, planned_stages=stages)
    write(run, "eval:base", "base.gmmlu.json")
    assert read_manifest(str(out))["complete"] is False
    with pytest.raises(ConfigError, match=r"an incomplete run of these settings \(1 of 2 stages done\).*--resume"):
        ResultsFolder.claim(out, A, resume=False, planned_stages=stages)
    with pytest.raises(ConfigError, match="--resume: .* was started by model /models/a"):
        ResultsFolder.claim(out, B, resume=True, planned_stages=stages)
    again = ResultsFolder.claim(out, A, resume=True, planned_stages=stages)
    assert again.done("eval:base") and not again.done("comparison")
    write(again, "comparison", "delta_gmmlu.csv")
    assert read_manifest(str(out))["complete"] is True


def test_forget_unlists_a_stage_before_removing_its_files(tmp_path):
    out = tmp_path / "run"
    run = ResultsFolder.claim(out, A, planned_stages=["eval:base", "comparison"])
    write(run, "eval:base", "base.gmmlu.json")
    write(run, "comparison", "delta_gmmlu.csv")
    seen = []
    real_remove = os.remove

    def remove(path):  # the manifest on disk must already say the stage is gone
        seen.append((os.path.basename(path), list(read_manifest(str(out))["stages"])))
        real_remove(path)

    os.remove = remove
    try:
        run.forget("comparison")
    finally:
        os.remove = real_remove
    assert seen == [("delta_gmmlu.csv", ["eval:base"])]
    assert read_manifest(str(out))["complete"] is False and tree(out) == sorted([MANIFEST, "base.gmmlu.json"])


def test_abandon_takes_back_what_a_refused_run_made(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    run = ResultsFolder.claim(out, A, planned_stages=["eval:base"])
    run.save()
    assert (out / MANIFEST).is_file()
    run.abandon()
    assert os.listdir(tmp_path) == []  # a/, a/b/ and run/ did not exist before the claim


def test_a_foreign_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other"}))
    from jaxsteer.errors import DataError

    with pytest.raises(DataError, match="not a jaxsteer results manifest"):
        ResultsFolder.claim(tmp_path, A)


def test_other_processes_of_a_job_read_the_folder_and_never_change_it(tmp_path, job):
    out = tmp_path / "res"
    job.index = 0
    write(ResultsFolder.claim(out, A), "eval:base", "base.gmmlu.json")
    before = {name: (out / name).read_text() for name in tree(out)}
    job.index = 1  # the same job's process 1: the same decisions, no moves, no manifest, no removals
    assert ResultsFolder.claim(out, A).done("eval:base")
    other = ResultsFolder.claim(out, B, overwrite=True)
    other.finish("eval:other", [])
    ResultsFolder.claim(out, A).forget("eval:base")
    assert {name: (out / name).read_text() for name in tree(out)} == before
    assert len(job.barriers) == 4  # each claim, on every process, waits until all have read the folder
    job.index = 0
    ResultsFolder.claim(out, B, overwrite=True)
    assert [n for n in os.listdir(out) if n.startswith("replaced-")]


def test_a_training_runs_folder_is_never_a_results_folder(tmp_path):
    """`train --resume` must still find its run: no eval/run results (and their manifest) go in beside it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a training run's folder"):
        ResultsFolder.claim(run, {"model": "m", "seed": 0})
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_files_a_cut_short_set_aside_left_unlisted_go_aside_under_another_writers_overwrite(tmp_path):
    """Between set_aside_earlier's manifest write and its move, the earlier files are on disk but unlisted:
    another writer's --overwrite must move them too, not replace them in place."""
    out = tmp_path / "res"
    first = ResultsFolder.claim(out, {"model": "a", "seed": 0}, planned_files=["r.json"], keep_earlier=True)
    os.makedirs(out, exist_ok=True)
    (out / "r.json").write_text("old")
    first.finish("eval:r", [out / "r.json"])
    second = ResultsFolder.claim(out, {"model": "a", "seed": 0}, overwrite=True, planned_files=["r.json"],
                                 keep_earlier=True)  # fmt: skip
    second.aside, stages = None, second.record["stages"]  # the cut: the manifest rewritten, nothing moved
    stages.pop("eval:r")
    second._write()
    ResultsFolder.claim(out, {"model": "b", "seed": 0}, overwrite=True, planned_files=["r.json"])
    (aside,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert (aside / "r.json").read_text() == "old" and not (out / "r.json").exists()


def test_plain_outputs_stay_out_of_a_training_run_folder(tmp_path):
    """plane/analyze/demo wrote into a training run's folder: only claim refused it before."""
    from jaxsteer.outputs import check_plain_outputs

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"is a training run's folder \(jaxsteer train\)"):
        check_plain_outputs(str(tmp_path / "run"), ["plane.png"], overwrite=True)
