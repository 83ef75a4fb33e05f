"""Per-rule logging: everything a job prints (tqdm bars included) goes to its Snakemake log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str | Path | None) -> Iterator[None]:
    """Send stdout, stderr and `logging` to `log_path` (append) for the duration of a job."""
    if log_path is None:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        start = time.time()
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        except Exception:
            logging.getLogger("sekd").exception("job failed after %.1f s", time.time() - start)
            raise
        finally:
            logging.getLogger("sekd").info("job ended after %.1f s", time.time() - start)
            root.removeHandler(handler)
