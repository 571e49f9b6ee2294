"""Rebuilds as the tests run them: the test set-up's region and erasure keys, a topic of the test's own."""

from typing import Any

from context.store import ProjectionWriter
from events.rebuild import RebuildReport, rebuild
from events.settings import KafkaSettings
from events.signing import ErasureSigner
from tests.factories import ERASURES


def rebuild_topic(
    topic: str,
    writer: ProjectionWriter,
    *,
    grace_s: float = 0,
    erasures: ErasureSigner = ERASURES,
    **options: Any,
) -> RebuildReport:
    """`citizen-context rebuild` of `topic` into `writer`'s Redis, in this process."""
    return rebuild(
        kafka=KafkaSettings(topic=topic),
        writer=writer,
        default_region="GB",
        erasures=erasures,
        grace_s=grace_s,
        **options,
    )
