"""Hits of known-bug signatures: which failed builds matched which signature, and when.

An executor records one `SignatureHit` per matched signature of a failed build, as a sequential znode under
`/diagnosis/signature-hits`; the newest `KEEP` are kept.  `gatekeeper signatures` and the web count them per
signature over time.  Each hit also counts in `/diagnosis/signature-counts/<id>`, which only grows: the all-time
totals that /metrics exposes as counters.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.recipe.counter import Counter

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import Record

log = logging.getLogger("gatekeeper.zk.signatures")

KEEP = 5000
SIGNATURE_COUNTS = "/diagnosis/signature-counts"


@dataclass
class SignatureHit(Record):
    signature: str = ""
    title: str = ""
    url: str = ""
    build: str = ""
    job: str = ""
    pipeline: str = ""
    change: str = ""  # "N,P"
    project: str = ""
    provider: str = ""
    log_url: str = ""
    time: float = field(default_factory=time.time)


def record_hits(zk: ZKClient, hits: Iterable[SignatureHit], keep: int = KEEP) -> None:
    """Store hits, then drop the oldest beyond `keep`."""
    for hit in hits:
        zk.client.create(f"{paths.SIGNATURE_HITS}/h-", hit.to_bytes(), sequence=True, makepath=True)
        count = Counter(zk.client, _count_path(hit.signature))
        count += 1  # a versioned read-modify-write: concurrent executors' hits all count
    try:
        children = sorted(zk.client.get_children(paths.SIGNATURE_HITS))
    except NoNodeError:
        return
    for name in children[:max(0, len(children) - keep)]:
        try:
            zk.client.delete(f"{paths.SIGNATURE_HITS}/{name}")
        except NoNodeError:
            pass


def read_hits(zk: ZKClient, since: float = 0.0) -> list[SignatureHit]:
    """Every kept hit at or after `since`, oldest first; unreadable records are skipped with a warning."""
    try:
        children = sorted(zk.client.get_children(paths.SIGNATURE_HITS))
    except NoNodeError:
        return []
    hits = []
    for name in children:
        try:
            raw, _ = zk.client.get(f"{paths.SIGNATURE_HITS}/{name}")
            hit = SignatureHit.from_bytes(raw)
        except NoNodeError:
            continue
        except (ValueError, TypeError, KazooException) as exc:
            log.warning("%s/%s: unreadable signature hit skipped: %s", paths.SIGNATURE_HITS, name, exc)
            continue
        if hit.time >= since:
            hits.append(hit)
    return hits


def hit_counts(signatures: Iterable[Any], hits: Iterable[SignatureHit], now: float | None = None,
               totals: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Per signature (the layout's, then any other that has hits): hits in the last day, week, and kept in all
    (`total`), ever (`all_time`, from `totals` as signature_totals gives them), and the newest hit."""
    now = time.time() if now is None else now
    rows: dict[str, dict[str, Any]] = {}
    for sig in signatures:
        rows[sig.id] = {"id": sig.id, "title": sig.title, "url": sig.url, "in_layout": True,
                        "day": 0, "week": 0, "total": 0, "last": None}
    for hit in hits:
        row = rows.setdefault(hit.signature, {"id": hit.signature, "title": hit.title, "url": hit.url,
                                              "in_layout": False, "day": 0, "week": 0, "total": 0, "last": None})
        row["total"] += 1
        row["week"] += now - hit.time <= 7 * 86400
        row["day"] += now - hit.time <= 86400
        if row["last"] is None or hit.time >= row["last"]["time"]:
            row["last"] = hit.to_dict()
            row["last"].pop("_v", None)
    for ident, count in (totals or {}).items():
        if count and ident not in rows:  # every kept hit is gone: the count remains
            rows[ident] = {"id": ident, "title": "", "url": "", "in_layout": False, "day": 0, "week": 0, "total": 0,
                           "last": None}
    for row in rows.values():
        row["all_time"] = max(row["total"], (totals or {}).get(row["id"], 0))  # hits from before counting began
    return list(rows.values())


def _count_path(signature: str) -> str:
    return f"{SIGNATURE_COUNTS}/{urllib.parse.quote(signature, safe='')}"


def signature_totals(zk: ZKClient, ids: Iterable[str] = ()) -> dict[str, int]:
    """Every hit ever recorded, per signature id (those of `ids` with none count 0)."""
    totals = dict.fromkeys(ids, 0)
    try:
        children = zk.client.get_children(SIGNATURE_COUNTS)
    except NoNodeError:
        return totals
    for name in children:
        try:
            totals[urllib.parse.unquote(name)] = int(Counter(zk.client, f"{SIGNATURE_COUNTS}/{name}").value)
        except (ValueError, TypeError, KazooException) as exc:
            log.warning("%s/%s: unreadable signature count skipped: %s", SIGNATURE_COUNTS, name, exc)
    return totals
