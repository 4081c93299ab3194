"""Writes to the MLflow tracking store, made in order and held back while the store does not answer, kept on
disk meanwhile: neither an outage of the tracking server nor a driver that dies during one loses a write.

The MLflow callback asks for every write here (`HeldBackWrites.submit`). A write runs at once unless older
ones are held back, so each run's steps stay in order. When a write fails:

* and the store still answers a cheap read, the write itself is at fault: it is logged and skipped (holding
  it would block every later write for good);
* and the store does not answer, it and every later write are held back and tried again at the next
  submit, until the store answers.

While writes are held back they are also saved as JSON in `path` (the sweep folder's `mlflow_pending.json`),
each with a snapshot of what it needs from its Tune trial (`TrialView`), taken when it was asked for. A
driver killed during an outage leaves them there, and the next start (`sweep resume`) loads them and makes
them first. Every write is safe to make twice: runs are looked up before they are made, and a metric step
that a run already has is skipped, so a write that ran just before a kill and is made again changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from sweep.core import storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialView:
    """What the MLflow callback reads of a Tune trial, as it was when a write was asked for (JSON-able)."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    last_result: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"

    @classmethod
    def of(cls, trial: Any) -> "TrialView":
        """The view of a Tune trial (or of any object with a `trial_id` and `config`; the rest may be missing)."""
        return cls(str(trial.trial_id), dict(getattr(trial, "config", None) or {}),
                   dict(getattr(trial, "last_result", None) or {}), str(getattr(trial, "status", "RUNNING")))


@dataclass(frozen=True)
class Write:
    """One write: `op` names it for the callback, `args` are its JSON-able arguments, `what` is for messages."""

    what: str
    op: str
    args: dict[str, Any]


class HeldBackWrites:
    """The ordered writes to one tracking store (module docstring). `apply` makes one write; `reachable`
    says whether the store answers; `path` (a local path or URI; None: memory only) keeps the held-back ones."""

    def __init__(self, apply: Callable[[Write], None], reachable: Callable[[], bool], path: str | None = None,
                 strict: bool = False):
        self._apply = apply
        self._reachable = reachable
        self.path = path
        self.strict = strict
        self.items: list[Write] = []
        self.outage = False  # writes are held back because the store did not answer
        self._on_disk = False  # `path` may hold writes: rewrite it when they are done

    def __len__(self) -> int:
        return len(self.items)

    def load(self) -> int:
        """Put the writes a previous driver left in `path` first in line; returns how many there were."""
        text = storage.read_text(self.path) if self.path else None
        saved = [Write(**w) for w in json.loads(text)] if text else []
        if saved:
            self._on_disk = True
            self.items = saved + self.items
            logger.warning("%d MLflow writes held back by an earlier start (the tracking store did not answer) are "
                           "made first", len(saved))
        return len(saved)

    def submit(self, write: Write) -> None:
        """Make `write` after every held-back one, or hold it back too (module docstring)."""
        self.items.append(write)
        self.flush()

    def flush(self) -> bool:
        """Make the held-back writes, oldest first, until one fails; True when none is left."""
        try:
            return self._flush()
        finally:
            self._save()

    def _flush(self) -> bool:
        while self.items:
            write = self.items[0]
            try:
                self._apply(write)
            except Exception:
                if self.strict:
                    self.items.clear()
                    raise
                if self._reachable():
                    logger.warning("MLflow logging failed while %s; the sweep goes on", write.what, exc_info=True)
                    self.items.pop(0)
                    continue
                if not self.outage:  # say it once per outage
                    self.outage = True
                    logger.warning("MLflow is unreachable (while %s); holding writes back until it answers (the "
                                   "sweep goes on)", write.what, exc_info=True)
                return False
            self.items.pop(0)
        if self.outage:
            self.outage = False
            logger.warning("MLflow answers again: every held-back write is done")
        return True

    def _save(self) -> None:
        """Keep the held-back writes in `path` (only while there are some, or to empty it once they are done)."""
        if self.path is None or not (self.items or self._on_disk):
            return
        try:
            storage.write_text(self.path, json.dumps([asdict(w) for w in self.items], default=_jsonable))
            self._on_disk = bool(self.items)
        except Exception:  # the sweep folder is unwritable: the writes are still held in memory
            logger.warning("could not save the held-back MLflow writes to %s", self.path, exc_info=True)


def _jsonable(value: Any) -> Any:
    """numpy scalars and other odd values in a Tune result, for `json.dumps`."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
