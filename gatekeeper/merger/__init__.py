"""The merger: a cache of git repos and speculative merges for the scheduler's queue items.

- `cache.RepoCache`: one bare repo per project, fetched from Gerrit (explicit refs only).
- `speculative.SpeculativeMerger`: MergeRequest -> MergeResult, incrementally onto the item ahead's RepoState.
- `service.MergerService`: takes requests from ZooKeeper with a worker pool (`gatekeeper merger`).

The git work itself (deterministic merges, `reproduce()` for executors) is in `gatekeeper.gitrepo`, which a
service that is not the merger may import.
"""
