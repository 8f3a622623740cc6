"""What a layout holds as a whole: the refusal of one that would gate and launch nothing (empty, or with files a
broken deploy left empty), and of one a scheduler cannot run (no pipeline: every queued change would be dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

from gatekeeper.config.model import Layout
from gatekeeper.config.yamlfile import ConfigError, load_yaml


def emptiness_errors(lay: Layout, texts: dict[str, str], blank: list[str], origin: str | None) -> list[ConfigError]:
    """The errors of a layout parsed cleanly from `texts` (`blank`: its files empty or with only comments; `origin`:
    its directory or file, as given)."""
    if not lay.pipelines and not lay.nodepool.providers:
        # Known-bug signatures left alone in a file of their own make no layout either.
        return [ConfigError(_whole(texts, origin), 0, "", "the layout defines no pipelines and no node providers, so "
                            "nothing would be gated or launched" + _contents(lay, texts, blank))]
    # An empty file beside others that define things is most often one a deploy truncated: taken as it is, the
    # pipelines it held would be removed with their items. One meant to define nothing says so in a comment (a file
    # of comments only is taken, as Zuul takes it), or can go.
    return [ConfigError(source, 0, "", "this layout file is empty; a file meant to define nothing can be removed, "
                        "or say so in a comment") for source in blank if not texts[source].strip()]


def pipelines_missing(layout: Layout) -> ConfigError | None:
    """Why a scheduler refuses `layout` (on a reload): it has no pipeline, so it would gate nothing, and every
    queued change would be dropped; None when it has pipelines. (A launcher's layout may hold only providers.)"""
    if layout.pipelines:
        return None
    blank = [name for name, text in layout.files.items() if load_yaml(text, name) is None]
    return ConfigError(_whole(layout.files), 0, "", "the layout defines no pipelines, so a scheduler would gate "
                       "nothing" + _contents(layout, layout.files, blank))


def _whole(texts: dict[str, str], origin: str | None = None) -> str:
    """The name of a layout as a whole: its directory or file as given (`origin`), else its one file or the
    directory its files share."""
    if origin:
        return origin
    if len(texts) == 1:
        return next(iter(texts))
    return (os.path.commonpath(list(texts)) if texts else "") or "layout"


def _contents(lay: Layout, texts: dict[str, str], blank: list[str]) -> str:
    """What a layout without pipelines holds, for the sentence that refuses it: " (it is empty)", or what it
    defines and which of its files are empty."""
    if len(blank) == len(texts):
        return " (it is empty)"
    have = [f"{len(things)} {kind}" for kind, things in (
        ("queues", lay.queues), ("jobs", lay.jobs), ("projects", lay.projects), ("node labels", lay.nodepool.labels),
        ("node providers", lay.nodepool.providers), ("known-bug signatures", lay.signatures)) if things]
    parts = [f"it defines only {', '.join(have)}"] if have else []
    names = [Path(b).name for b in blank]
    if names:
        parts.append(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} empty or only comments")
    return f" ({'; '.join(parts)})" if parts else ""
