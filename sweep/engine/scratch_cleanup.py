"""At the end of a sweep, remove the seed runs' scratch folders that killed runs left on every node.

A seed run removes its own scratch folder when it ends, and each seed run that starts removes what killed
runs left on its node (`trainable.scratch`). What the sweep's last ASHA-stopped groups left is removed here:
one small task per alive node, waiting a little for the stopped runs' processes to exit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trainable.run_control import default_scratch_dir
from trainable.scratch import remove_orphans

logger = logging.getLogger(__name__)

# How long a node's task waits for the processes of the sweep's stopped runs to exit (Ray tears them down
# after Tune has stopped their group; seconds on a loaded machine).
WAIT_S = 20.0


@ray.remote(num_cpus=0, max_retries=0)
def _remove_on_node(scratch_dir: str | None, trial_ids: tuple[str, ...], wait_s: float) -> list[str]:
    # The default scratch root is the node's own temp dir, so it is worked out on the node.
    return remove_orphans(scratch_dir or default_scratch_dir(), wait_for=trial_ids, wait_s=wait_s)


def remove_left_scratch(scratch_dir: str | None, trial_ids: Iterable[str], wait_s: float = WAIT_S) -> list[str]:
    """Remove, on every alive node, the scratch folders no living process owns; returns their names.

    Never fails the sweep: a node that does not answer keeps its folders until a later run there cleans up."""
    ids = tuple(sorted({str(t) for t in trial_ids if t}))
    refs: list[Any] = []
    try:
        for node in ray.nodes():
            if node.get("Alive"):
                strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                refs.append(_remove_on_node.options(scheduling_strategy=strategy).remote(scratch_dir, ids, wait_s))
        removed: list[str] = []
        for names in ray.get(refs, timeout=wait_s + 60):
            removed.extend(names)
    except Exception as err:  # cleaning up must never turn a finished sweep into a failed one
        logger.warning("scratch folders left by stopped seed runs were not all removed: %r", err)
        return []
    if removed:
        logger.info("removed %d scratch folders of stopped seed runs: %s", len(removed), ", ".join(removed))
    return removed
