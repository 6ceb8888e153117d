"""A training run's log: ``metrics.jsonl`` (one row per logged step, one uninterrupted run after a resume) and
its loss plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax

from jaxsteer.results import atomic_write


class MetricsLog:
    """``metrics.jsonl``: one JSON row per logged step (process 0 only); a resumed run first drops the rows
    after its checkpoint, so the file always reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int):
        self.file = None
        if jax.process_index() == 0:
            kept = [r for r in (read_metrics(path) if path.exists() else []) if r["step"] <= resume_step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run

    def write(self, row: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(rows: list[dict], base: Path) -> tuple[str, str]:
    """``loss.png``/``loss.svg``: every loss component against the step, one line per kind."""
    from jaxsteer.results import new_figure, write_figure

    fig = new_figure((7, 4), layout="tight")
    ax = fig.subplots()
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sub = [r for r in rows if r["kind"] == kind]
        for name in ("loss", "nll", "info_nce", "dpo"):
            if name in sub[0] and (name == "loss" or kind == "clo"):
                ax.plot([r["step"] for r in sub], [r[name] for r in sub], label=f"{kind} {name}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return write_figure(fig, base)
