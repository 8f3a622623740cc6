"""The Gerrit connection: typed events in (through ZooKeeper), reviews and submits out, git fetch URLs."""

from gatekeeper.gerrit.client import (
    GerritClient,
    GerritCommandError,
    GerritError,
    GerritReviewError,
    GerritSubmitError,
    GerritUnavailableError,
)
from gatekeeper.gerrit.connection import GerritConnection, change_ref
from gatekeeper.gerrit.events import GerritEvent, parse_event

__all__ = [
    "GerritClient", "GerritCommandError", "GerritConnection", "GerritError", "GerritEvent", "GerritReviewError",
    "GerritSubmitError", "GerritUnavailableError", "change_ref", "parse_event",
]
