"""The scheduler: pipelines, change queues, items and buildsets, kept in ZooKeeper.

- `triggers`: which events start a pipeline; requirements re-checked on every pass
- `manager`: PipelineManager, the queue loop (nearest non-failing item), enqueue, operator requests
- `reports`: what an item at the head reports, dequeue reports with the root cause, the build history
- `backend`: requests batched into the pass's transaction; reports sent in order through a ledger
- `scheduler`: the service (lifecycle, rounds, one pipeline's pass, layout reloads)
- `intake`: reading events, looking up their changes, setting failing events aside (retries, dead letters)
- `locks`: one scheduler per pipeline at a time (kazoo locks with a short lease, watched when held elsewhere)

What it shares with other services lives in `gatekeeper.models` (the pipeline state, its ZooKeeper store, trigger
events, and the source and reporter interfaces); the Gerrit driver (`gatekeeper.gerrit.source`, `.trigger`)
implements those interfaces and is wired in by the composition roots (`gatekeeper.cmd`, the all-in-one), never
imported here.
"""
