"""Where a seed group stands: one enum for the whole service.

Values are the plain strings that travel in Tune results (`status`), MLflow tags (`schedsweep.status`) and
JSON, so a `GroupStatus` compares equal to its string and round-trips through all three unchanged.
"""

from __future__ import annotations

from enum import Enum


class GroupStatus(str, Enum):
    """A seed group's state. Only FINISHED groups are ranked; the rest are listed in this order below them."""

    FINISHED = "finished"  # every seed ran to the horizon
    PRUNED = "pruned"  # stopped early by ASHA (its losses come from fewer steps)
    DIVERGED = "diverged"  # a seed's loss went non-finite: the group carries the penalty
    ERROR = "error"  # the trial failed
    RUNNING = "running"  # not ended yet (or interrupted)

    def __str__(self) -> str:  # f-strings and MLflow tags get "finished", not "GroupStatus.FINISHED"
        return self.value

    @classmethod
    def parse(cls, value: object, default: "GroupStatus" = None) -> "GroupStatus":  # type: ignore[assignment]
        """The status a stored string names; `default` (RUNNING unless given) for anything else."""
        try:
            return cls(value)
        except ValueError:
            return default if default is not None else cls.RUNNING


FINISHED, PRUNED, DIVERGED, ERROR, RUNNING = (GroupStatus.FINISHED, GroupStatus.PRUNED, GroupStatus.DIVERGED,
                                              GroupStatus.ERROR, GroupStatus.RUNNING)
UNRANKED_ORDER = (PRUNED, DIVERGED, ERROR, RUNNING)  # how groups that are not ranked are listed

# Tune's trial states that mean a trial will not report again.
TUNE_ENDED = ("TERMINATED", "ERROR")
