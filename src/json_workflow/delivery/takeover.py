"""Taking over a dead instance's claim area (a fleet on PostgreSQL; see store.fleet for who is dead).

The same rules as crash recovery: what it had staged is published where it was, the rest is moved
into this instance's claim area and processed again from the start. Nothing is lost, and no copy is
delivered twice: the journal says which copies were published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from json_workflow.config import CLAIM_AREA
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.logs import log
from json_workflow.plural import count

if TYPE_CHECKING:
    from json_workflow.delivery.shared import SharedPipeline
    from json_workflow.store.fleet import Membership


def take_over(membership: Membership, pipeline: Pipeline | SharedPipeline) -> list[Delivery]:
    """Finish the claims of every dead instance the lease found; returns the deliveries processed again."""
    again: list[Delivery] = []
    while membership.found:
        peer = membership.found.pop(0)
        area = pipeline.config.hot / CLAIM_AREA / peer
        log.warning("[TAKEOVER] Finishing the claims of instance %s in %s", peer, area)
        summary = Summary()
        done = pipeline.recover(summary, area)
        membership.taken_over(peer)
        log.warning(
            "[TAKEOVER] Took over instance %s: %s finished (%d of them processed again from the start)",
            peer,
            count(summary.processed + summary.pending, "file"),
            len(done),
        )
        again += done
    return again
