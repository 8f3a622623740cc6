"""The scheduler: pipelines, change queues, items and buildsets, kept in ZooKeeper.

- `model`: Change, Build, Item, ChangeQueue, PipelineState (records)
- `triggers`: which events start a pipeline; requirements re-checked on every pass
- `manager`: PipelineManager, the queue loop (nearest non-failing item), enqueue, reports, operator requests
- `store`: a pipeline's state in ZooKeeper (summary + one znode per item, written when changed)
- `backend`: requests batched into the pass's transaction; reports sent in order through a ledger
- `scheduler`: the service (event intake, pipeline locks, rounds)
- `gerrit_source`: the Gerrit connection as ChangeSource and Reporter
- `cli`: `gatekeeper scheduler`, `enqueue`, `dequeue`, `promote`, `reload`
"""
