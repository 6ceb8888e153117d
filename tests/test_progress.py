"""Progress bars only on a terminal (jaxsteer/progress.py): a log file holds result lines, not bar frames."""

from __future__ import annotations

import contextlib
import io

from jaxsteer.fixtures import random_model, tiny_config
from jaxsteer.progress import bar
from jaxsteer.scoring import score_multiple_choice


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_only():
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        with contextlib.redirect_stderr(stream):
            b = bar(3, "work", "item")
            assert (b is not None) == drawn
            if b is not None:
                b.update(3)
                b.close()
        assert ("work" in stream.getvalue()) == drawn
    with contextlib.redirect_stderr(Terminal()):
        assert bar(3, "work", "item", enabled=False) is None  # --quiet


def test_scoring_with_progress_writes_no_bar_frames_into_a_log(batch):
    """``jaxsteer run > log 2>&1``: before, tqdm's carriage-return frames went to the file and the next result
    line was printed after a half-erased bar."""
    model = random_model(tiny_config(128))
    ids, mask = batch
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        result = score_multiple_choice(model, ids, mask, [4, 5, 6, 7], [0] * len(ids), progress=True)
    assert result.logprobs.shape == (len(ids), 4) and log.getvalue() == ""
