"""Where results go: the output location checked before any work, and the manifest of a results folder.

Every command that writes checks its output location first (:func:`check_output_folder`,
:func:`check_output_file`): an existing file where a folder is wanted, a parent that is a file, or a
folder that cannot be written to is one line and exit 2, before a model is loaded — and nothing is
created until the inputs are checked (the writes create their folders).

A results folder carries ``manifest.json`` (:class:`ResultsFolder`), written atomically:

- ``writer``: what writes into the folder — for ``eval``/``extract``/``sweep``/``steer`` the model
  (source and config hash) and the seed; for ``jaxsteer run`` the models, the experiment settings and
  the seed. Results of another writer are refused (one line naming both) unless ``--overwrite``, which
  first moves every file the manifest lists into ``replaced-DATE/`` inside the folder. The move goes
  through a hidden ``.replacing-DATE/`` folder that the next command finishes if it was cut short, so
  the old results are never half moved. The same writer adds to the folder, but the CLI's single commands
  (``keep_earlier``) never replace an earlier call's files unasked: refused, or with ``--overwrite`` set
  aside (:meth:`ResultsFolder.set_aside_earlier`) just before the new files are written. A training run's
  folder (``run.json``, ``checkpoints/``, ``metrics.jsonl``) is never a results folder.
- ``stages``: each finished stage and the files it wrote. A stage is listed only once all its files
  are in place, so at every instant the manifest names exactly the complete parts; ``jaxsteer run``
  lists the stages it plans and sets ``complete`` when the last one is done.

In a multi-process job (``jax.distributed``) every process claims the folder and reads the same manifest;
only process 0 changes the folder (:func:`jaxsteer.results.writes_results`), and only once every process
has read it, so all of them skip the same stages (``--resume`` needs ``out`` on a filesystem every host sees).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from jaxsteer.errors import ConfigError, DataError
from jaxsteer.results import sync_processes, write_json, writes_results

MANIFEST = "manifest.json"
TRAINING_RUN = (
    "run.json",
    "checkpoints",
    "metrics.jsonl",
)  # what marks a `jaxsteer train` folder (results never go there)
FORMAT = "jaxsteer-results/1"
_STAGING = ".replacing-"
_PLAN = ".moving.json"


# --- output locations -----------------------------------------------------------------------------
def check_output_folder(path: str | os.PathLike, flag: str = "--out") -> str:
    """The absolute folder ``path`` if it is, or can be made as, a writable folder; creates nothing."""
    shown = os.fspath(path)
    if not shown.strip():  # an unset shell variable: abspath("") would be the current folder
        raise ConfigError(f"{flag} is empty; name a folder")
    target = os.path.abspath(shown)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise ConfigError(f"{flag} {shown} is a file, not a folder; choose another {flag}")
    existing = _existing_ancestor(target)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {shown}: {existing} is a file, so no folder can be made under it")
    if not _writable(existing):
        raise ConfigError(f"{flag} {shown}: {existing} is not writable")
    return target


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> str:
    """The absolute file ``path`` if it can be written (its folder checked as above); creates nothing."""
    shown = os.fspath(path)
    target = os.path.abspath(shown)
    if os.path.isdir(target):
        raise ConfigError(f"{flag} {shown} is a folder; expected a file name")
    existing = _existing_ancestor(os.path.dirname(target))
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {shown}: {existing} is a file, so {shown} cannot be written")
    if not _writable(existing):
        raise ConfigError(f"{flag} {shown}: {existing} is not writable")
    return target


def _existing_ancestor(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _writable(folder: str) -> bool:
    """Whether a file can be made in ``folder`` — tried, since ``os.access`` says yes to root on a read-only
    mount and knows nothing of quotas or ACLs; the probe is removed at once."""
    from jaxsteer.results import temp_file

    try:
        fd, probe = temp_file(folder, prefix=".jaxsteer-probe-")
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True


def model_identity(source) -> str | None:
    """A model as a results folder records it: the real path of a local folder (however it was spelled), else
    the hub id as given."""
    if source is None:
        return None
    source = os.fspath(source)
    return os.path.realpath(source) if os.path.isdir(source) else source


# --- the manifest -----------------------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def describe_writer(writer: dict[str, Any]) -> str:
    """``model runs/a (config 3f2c…), seed 0`` — the writer in one phrase for messages."""
    parts = []
    if "models" in writer:
        parts.append("models " + ", ".join(f"{k}={v}" for k, v in writer["models"].items()))
    elif "model" in writer:
        parts.append(f"model {writer['model']}")
    if writer.get("config_hash"):
        parts.append(f"config hash {writer['config_hash']}")
    if writer.get("experiment_hash"):
        parts.append(f"settings {writer['experiment_hash']}")
    if "seed" in writer:
        parts.append(f"seed {writer['seed']}")
    return ", ".join(parts) or "unknown"


class ResultsFolder:
    """One results folder and its manifest. Use :meth:`claim` before any work, :meth:`finish` per stage."""

    def __init__(self, path: str, record: dict[str, Any], new: bool = True):
        self.path = path
        self.record = record
        self.new = new  # no manifest was there: this claim made the folder a results folder
        self.existed = _existing_ancestor(path)  # what was on disk before: abandon() removes nothing above it
        self.aside: tuple[list[str], list[str]] | None = None  # (stages, files) for set_aside_earlier

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def claim(
        cls,
        path: str | os.PathLike,
        writer: dict[str, Any],
        *,
        overwrite: bool = False,
        resume: bool | None = None,
        planned_files: Iterable[str] = (),
        planned_stages: Sequence[str] = (),
        flag: str = "--out",
        keep_earlier: bool = False,
    ) -> ResultsFolder:
        """Check that ``writer`` may write into ``path``; with ``overwrite``, move the old results aside first.

        ``resume=None`` (``eval`` and the like): the same writer adds to the folder (see ``keep_earlier``). ``resume`` True/False
        (``jaxsteer run``): a folder holding a run must be resumed (same writer) or overwritten.
        ``planned_files`` (relative names) that exist in a folder without a manifest are refused too: no
        record says what wrote them. ``keep_earlier`` (the CLI's single commands): ``planned_files`` that an
        earlier call of the same writer left are refused too, unless ``overwrite`` — a second ``eval`` of the
        same method must not replace the first's result unasked. Writes nothing unless ``overwrite`` moves old
        results.
        """
        shown = os.fspath(path)
        folder = check_output_folder(shown, flag)
        _finish_interrupted_move(folder)
        refuse_training_run(folder, shown, flag)
        record = read_manifest(folder)
        aside = None
        writer = _jsonable(writer)
        if record is None:
            if resume:
                raise ConfigError(f"--resume: {shown} holds no {MANIFEST}, so there is no run to continue")
            clash = [f for f in planned_files if os.path.lexists(os.path.join(folder, f))]
            if clash and not overwrite:
                raise ConfigError(
                    f"{shown} already holds {clash[0]}{f' (and {len(clash) - 1} more)' if len(clash) > 1 else ''} "
                    f"with no {MANIFEST} saying what wrote it; pass --overwrite to move it aside, or another {flag}"
                )
            if clash:
                _move_aside(folder, clash)
        else:
            same = record.get("writer") == writer
            if resume and not same:
                raise ConfigError(
                    f"--resume: {shown} was started by {describe_writer(record.get('writer') or {})}, "
                    f"not by this run ({describe_writer(writer)}); pass --overwrite to start again"
                )
            if overwrite and not resume and (not same or resume is False):
                # planned files on disk that the manifest no longer lists (a set-aside cut short) go too
                on_disk = [f for f in planned_files if os.path.lexists(os.path.join(folder, f))]
                _move_aside(folder, listed_files(record) + on_disk + [MANIFEST])
                record = None
            elif not same:
                raise ConfigError(
                    f"{shown} holds results of {describe_writer(record.get('writer') or {})}; this is "
                    f"{describe_writer(writer)}. Pass --overwrite to move them aside, or choose another {flag}"
                )
            elif keep_earlier and (clash := _earlier_files(folder, record, planned_files)):
                if not overwrite:
                    more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
                    raise ConfigError(
                        f"{shown} already holds {clash[0]}{more} from an earlier call of the same model and seed; "
                        f"pass --overwrite to move it to replaced-DATE/, or choose another {flag}"
                    )
                stages = [s for s, info in record["stages"].items() if set(info.get("files", [])) & set(clash)]
                files = sorted(set(clash).union(*(record["stages"][s]["files"] for s in stages)))
                aside = (stages, files)  # moved by set_aside_earlier, just before the command writes
            elif resume is False:
                state = "a complete" if record.get("complete") else "an incomplete"
                done, planned = len(record.get("stages", {})), len(record.get("planned", []))
                raise ConfigError(
                    f"{shown} already holds {state} run of these settings ({done} of {planned} stages done); "
                    "pass --resume to continue it (finished stages are skipped) or --overwrite to start again"
                )
        new = record is None
        if new:
            record = {"format": FORMAT, "writer": writer, "created": _now(), "stages": {}}
        if planned_stages:
            record["planned"] = list(planned_stages)
            record.setdefault("complete", False)
        sync_processes("results folder claimed")  # every process has read the folder before process 0 writes into it
        claimed = cls(folder, record, new)
        claimed.aside = aside
        return claimed

    # -- stages -------------------------------------------------------------------------------------
    def done(self, stage: str) -> bool:
        return stage in self.record["stages"]

    def files(self, stage: str) -> list[str]:
        """The files of a finished stage, relative to the folder."""
        return list(self.record["stages"][stage]["files"])

    def set_aside_earlier(self) -> None:
        """With ``keep_earlier`` and ``overwrite``: just before the command's first write, the earlier call's files
        it replaces — with the rest of their stages' files — move to ``replaced-DATE/``; a command refused before
        writing moves nothing. The manifest first, then the files (as :meth:`forget`): it never lists a file that
        is gone, and files an interrupt leaves unlisted count as a clash for the next claim."""
        if not self.aside:
            return
        stages, files = self.aside
        self.aside = None
        for stage in stages:
            self.record["stages"].pop(stage, None)
        if self.record.get("planned") is not None:
            self.record["complete"] = False
        self._write()
        move_aside(self.path, files)

    def finish(self, stage: str, paths: Iterable[str | os.PathLike]) -> None:
        """Record ``stage`` as finished with ``paths`` (all already in place); the manifest is rewritten atomically."""
        files = [os.path.relpath(os.path.abspath(os.fspath(p)), self.path) for p in paths]
        self.record["stages"][stage] = {"files": files, "finished": _now()}
        planned = self.record.get("planned")
        if planned is not None:
            self.record["complete"] = all(s in self.record["stages"] for s in planned)
        self._write()

    def forget(self, stage: str) -> None:
        """Drop a stage whose inputs are about to change: first from the manifest, then its files (so the
        manifest never lists a file that is gone, and a file left by an interrupt here is listed nowhere)."""
        if stage not in self.record["stages"]:
            return
        files = self.files(stage)
        del self.record["stages"][stage]
        if self.record.get("planned") is not None:
            self.record["complete"] = False
        self._write()
        for name in files if writes_results() else ():
            path = os.path.join(self.path, name)
            if os.path.isfile(path):
                os.remove(path)

    def save(self) -> None:
        """Write the manifest now (a run marks its folder before its first stage, so that an interrupt
        leaves a folder that says it is incomplete)."""
        self._write()

    def abandon(self) -> None:
        """After a refusal with no stage finished: take back the manifest this claim wrote (and the folder,
        if it is left empty), so a refused command leaves nothing behind."""
        if not self.new or self.record["stages"] or not writes_results():
            return
        path = os.path.join(self.path, MANIFEST)
        if os.path.isfile(path):
            os.remove(path)
        _remove_empty_parents(self.path, self.existed)

    def summary(self) -> str:
        """``3 of 9 stages finished (eval:base, …)`` for the interrupt message."""
        done = list(self.record["stages"])
        planned = self.record.get("planned")
        count = f"{len(done)} of {len(planned)}" if planned else str(len(done))
        return f"{count} stage(s) finished" + (f" ({', '.join(done)})" if done else "")

    def _write(self) -> None:
        write_json(os.path.join(self.path, MANIFEST), self.record)


def read_manifest(folder: str) -> dict[str, Any] | None:
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    from jaxsteer.data.files import read_json

    record = read_json(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("stages"), dict):
        raise DataError(f"{path} is not a jaxsteer results manifest (expected format {FORMAT!r})")
    return record


def _earlier_files(folder: str, record: dict[str, Any], planned: Iterable[str]) -> list[str]:
    """Planned files an earlier call left: listed by the manifest, or on disk unlisted (a move cut short)."""
    listed = set(listed_files(record))
    return sorted(f for f in planned if f in listed or os.path.lexists(os.path.join(folder, f)))


def listed_files(record: dict[str, Any]) -> list[str]:
    return [f for stage in record.get("stages", {}).values() for f in stage.get("files", [])]


def _jsonable(writer: dict[str, Any]) -> dict[str, Any]:
    """The writer as it reads back from JSON (tuples → lists), so a stored writer compares equal."""
    return json.loads(json.dumps(writer, default=str))


def refuse_training_run(folder: str, shown: str, flag: str = "--out") -> None:
    """Results never go into a training run's folder (:data:`TRAINING_RUN` marks it)."""
    if any(os.path.exists(os.path.join(folder, n)) for n in TRAINING_RUN):
        raise ConfigError(f"{flag} {shown} is a training run's folder (jaxsteer train); choose another {flag}")


def check_plain_outputs(out: str, names: Iterable[str], overwrite: bool, flag: str = "--out") -> list[str]:
    """For commands that write a fixed set of files with no manifest (``plane``, ``analyze``, ``demo``), before any
    work: ``out`` must not be another command's results folder (its manifest would not list them) nor a training
    run's, and files there from
    an earlier call are kept unless ``overwrite``. Returns those files: the caller moves them to ``replaced-DATE/``
    (:func:`move_aside`) just before it writes, so a command refused later moves nothing."""
    folder = check_output_folder(out, flag)
    there: list[str] = []
    if os.path.isdir(folder):
        _finish_interrupted_move(folder)  # an earlier call's move cut short: finished before anything is judged
        refuse_training_run(folder, out, flag)
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            raise ConfigError(f"{flag} {out} is the results folder of another jaxsteer command ({MANIFEST}); "
                              f"choose another {flag}")  # fmt: skip
        there = [n for n in names if os.path.lexists(os.path.join(folder, n))]
        if there and not overwrite:
            more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
            raise ConfigError(f"{flag} {out} already holds {there[0]}{more} from an earlier call; pass --overwrite "
                              f"to move it to replaced-DATE/, or choose another {flag}")  # fmt: skip
    sync_processes("outputs checked")  # every process has judged the folder before process 0 writes into it
    return there


# --- moving old results aside -------------------------------------------------------------------------
def move_aside(folder: str, names: Iterable[str]) -> str | None:
    """Move ``names`` (files or folders, relative to ``folder``) into ``folder/replaced-DATE/``; a folder's
    manifest stays where it is."""
    return _move_aside(folder, names, with_manifest=False)


def _move_aside(folder: str, names: Iterable[str], with_manifest: bool = True) -> str | None:
    """Move ``names`` (relative; the manifest last, unless not ``with_manifest``) into ``replaced-DATE/``: all of
    them, or — if this is cut short — all of them once the next command in this folder has finished the move
    (process 0 only)."""
    names = [n for n in dict.fromkeys(names) if n != MANIFEST] + ([MANIFEST] if with_manifest else [])
    if not writes_results() or not names:
        return None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    staging = os.path.join(folder, _STAGING + stamp)
    os.makedirs(staging)
    write_json(os.path.join(staging, _PLAN), names)  # atomic: the plan is whole or absent
    return _complete_move(folder, staging)


def _complete_move(folder: str, staging: str) -> str:
    with open(os.path.join(staging, _PLAN), encoding="utf-8") as f:
        names = json.load(f)
    for name in names:
        src, dst = os.path.join(folder, name), os.path.join(staging, name)
        if os.path.lexists(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)
            _remove_empty_parents(os.path.dirname(src), folder)
    final = os.path.join(folder, "replaced-" + os.path.basename(staging)[len(_STAGING) :])
    os.replace(staging, final)
    os.remove(os.path.join(final, _PLAN))
    return final


def finish_interrupted_move(folder: str) -> None:
    """Complete a move to ``replaced-DATE/`` that a command left cut short in ``folder`` (if any)."""
    _finish_interrupted_move(folder)


def _finish_interrupted_move(folder: str) -> None:
    if not os.path.isdir(folder) or not writes_results():
        return
    for name in sorted(os.listdir(folder)):
        staging = os.path.join(folder, name)
        if not (name.startswith(_STAGING) and os.path.isdir(staging)):
            continue
        if os.path.isfile(os.path.join(staging, _PLAN)):
            _complete_move(folder, staging)
        elif not os.listdir(staging):  # cut short before its plan was written: nothing was moved
            os.rmdir(staging)


def _remove_empty_parents(path: str, stop: str) -> None:
    while os.path.abspath(path) != os.path.abspath(stop) and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
        path = os.path.dirname(path)
