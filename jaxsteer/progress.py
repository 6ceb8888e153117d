"""Progress bars on a terminal only.

Result lines go to stdout and bars to stderr; in a log file (``jaxsteer demo > log 2>&1``, a batch job) a
bar's carriage returns would glue the next result line to a half-erased bar. So a bar is drawn only when
stderr is a terminal; elsewhere the result lines alone say where the work is.
"""

from __future__ import annotations

import sys


def bar(total: int, desc: str, unit: str, enabled: bool = True, **kwargs):
    """A tqdm bar, or ``None`` when progress is off or stderr is not a terminal (callers skip ``None``)."""
    if not enabled or not _is_terminal(sys.stderr):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
