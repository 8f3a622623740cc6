"""Every ZooKeeper path gatekeeper uses, in one place.

Paths are relative to the client's chroot (default `/gatekeeper`), so several installations, or every test,
can share one ZooKeeper.  Components add their paths here, in their own section, never as literals elsewhere.

    /components/<kind>/<id>                 ephemeral registration of each running service
    /events/connections/<conn>/q-<seq>      trigger events from a source connection (Gerrit), in order
    /events/connections/<conn>/state        the connection's catch-up state (last event time seen)
    /events/management/q-<seq>              operator requests (enqueue, dequeue, promote, reload)
    /election/<name>                        leader elections (one Gerrit listener per connection, ...)
    /locks/<name>                           service-wide locks (a pipeline, a node request, ...)
    /layout                                 the layout every scheduler runs (sharded; gatekeeper.config.store)
    /pipelines/<pipeline>/state             summary: queues (item ids), windows, item revisions, event cursors
    /pipelines/<pipeline>/items/<item id>   one queue item (change, merge state, builds), written when it changed
    /pipelines/<pipeline>/reported/<key>    report ledger: what was already reported (no double reports)
    /merger/requests/<id>, /merger/results/<id>
    /executor/requests/<id>, /executor/results/<id>, /executor/running/<id>
    /history/queue/q-<seq>                  finished builds and buildsets on their way to the history database
    /nodepool/requests/<priority>-<seq>     node requests (children ordered by priority then age)
    /nodepool/nodes/<id>                    node records
    /nodepool/images/<image>/<provider>/<build>   image builds and uploads
    /nodepool/launchers/<provider>          live providers (ephemeral), for "every live provider declined"
    /nodepool/holds/<id>                    autohold requests
"""

from __future__ import annotations

DEFAULT_CHROOT = "/gatekeeper"

COMPONENTS = "/components"
EVENTS = "/events"
CONNECTION_EVENTS = "/events/connections"
MANAGEMENT_EVENTS = "/events/management"
ELECTION = "/election"
LOCKS = "/locks"
LAYOUT = "/layout"
PIPELINES = "/pipelines"
MERGER_REQUESTS = "/merger/requests"
MERGER_RESULTS = "/merger/results"
EXECUTOR_REQUESTS = "/executor/requests"
EXECUTOR_RESULTS = "/executor/results"
NODEPOOL = "/nodepool"
NODE_REQUESTS = "/nodepool/requests"
NODES = "/nodepool/nodes"
IMAGES = "/nodepool/images"
IMAGE_BUILD_REQUESTS = "/nodepool/image-build-requests"  # operators' "build this image now", per image
LAUNCHERS = "/nodepool/launchers"
HOLDS = "/nodepool/holds"
ACCESS = "/nodepool/access"  # developers' SSH keys granted on held nodes, one znode per grant


def component(kind: str, ident: str | None = None) -> str:
    return f"{COMPONENTS}/{kind}" + (f"/{ident}" if ident else "")


def event_queue(connection: str) -> str:
    """Trigger events from one source connection, oldest first."""
    return f"{CONNECTION_EVENTS}/{connection}/queue"


def connection_state(connection: str) -> str:
    """A connection's durable bookkeeping (last event seen, for catch-up after an outage)."""
    return f"{CONNECTION_EVENTS}/{connection}/state"


def management_queue() -> str:
    return f"{MANAGEMENT_EVENTS}/queue"


def election(name: str) -> str:
    return f"{ELECTION}/{name}"


def lock(*parts: str) -> str:
    return f"{LOCKS}/" + "/".join(parts)


def pipeline(name: str) -> str:
    return f"{PIPELINES}/{name}"


def pipeline_state(name: str) -> str:
    return f"{PIPELINES}/{name}/state"


def pipeline_reported(name: str) -> str:
    return f"{PIPELINES}/{name}/reported"


def merger_request(ident: str) -> str:
    return f"{MERGER_REQUESTS}/{ident}"


def merger_result(ident: str) -> str:
    return f"{MERGER_RESULTS}/{ident}"


def executor_request(ident: str) -> str:
    return f"{EXECUTOR_REQUESTS}/{ident}"


def executor_result(ident: str) -> str:
    return f"{EXECUTOR_RESULTS}/{ident}"


def node_request(ident: str) -> str:
    return f"{NODE_REQUESTS}/{ident}"


def node(ident: str) -> str:
    return f"{NODES}/{ident}"


def image_build(image: str, provider: str, build: str | None = None) -> str:
    return f"{IMAGES}/{image}/{provider}" + (f"/{build}" if build else "")


def image_build_request(image: str, provider: str = "") -> str:
    """An operator's request for a new build of `image` on `provider` ("" for every provider with it)."""
    return f"{IMAGE_BUILD_REQUESTS}/{image}/{provider or '*'}"


def launcher(provider: str) -> str:
    return f"{LAUNCHERS}/{provider}"


def hold(ident: str) -> str:
    return f"{HOLDS}/{ident}"


def access_grant(ident: str) -> str:
    return f"{ACCESS}/{ident}"


# -- launcher (node pool) indexes ------------------------------------------------------------------------------
#   /nodepool/ready/<label>/<node id>         ready-node index: an entry per unallocated ready node
#   /nodepool/released/<node id>              consumers' "done with this node" signals for the launcher
#   /nodepool/nodes/<id>/lock                 a node's lock (kazoo Lock), held by its consumer while in use
#   /nodepool/providers/<name>/state          operators' decisions about a provider (drained), any launcher obeys
#   /nodepool/providers/<name>/health         the provider's health as its launcher last published it
#   /nodepool/unreadable/<kind>-<id>-<time>   records that could not be read, set aside for an operator
NODES_READY = "/nodepool/ready"
NODES_RELEASED = "/nodepool/released"
PROVIDERS = "/nodepool/providers"
UNREADABLE = "/nodepool/unreadable"


def provider_state(name: str) -> str:
    return f"{PROVIDERS}/{name}/state"


def provider_health(name: str) -> str:
    return f"{PROVIDERS}/{name}/health"


def ready_node(label: str, ident: str | None = None) -> str:
    return f"{NODES_READY}/{label}" + (f"/{ident}" if ident else "")


def released_node(ident: str) -> str:
    return f"{NODES_RELEASED}/{ident}"


def node_lock(ident: str) -> str:
    return f"{NODES}/{ident}/lock"


# -- build history --------------------------------------------------------------------------------------------
#   /history/queue/q-<seq>                    finished buildsets and builds, for the history recorder to store
HISTORY_EVENTS = "/history/queue"


def history_queue() -> str:
    return HISTORY_EVENTS


# -- scheduler ---------------------------------------------------------------------------------------------------
#   /pipelines/<pipeline>/state               summary: queues (item ids, windows), item revisions, event cursors
#   /pipelines/<pipeline>/items/<item id>     one queue item (change, merge, builds), written only when it changed
#   /events/management/results/<event id>     the scheduler's answer to an operator request ("" or an error)
MANAGEMENT_RESULTS = "/events/management/results"


def pipeline_items(name: str) -> str:
    return f"{PIPELINES}/{name}/items"


def pipeline_item(name: str, ident: str) -> str:
    return f"{PIPELINES}/{name}/items/{ident}"


def management_result(ident: str) -> str:
    return f"{MANAGEMENT_RESULTS}/{ident}"


# -- executor ----------------------------------------------------------------------------------------------------
#   /executor/running/<build id>              which executor started a build (persistent: outlives a dead executor,
#                                             whose build lock is gone, so the next claimer reports it for a retry)
EXECUTOR_RUNNING = "/executor/running"


def executor_running(ident: str) -> str:
    return f"{EXECUTOR_RUNNING}/{ident}"


#   /diagnosis/signature-hits/h-<seq>         one failed build matching one known-bug signature (the newest kept)
SIGNATURE_HITS = "/diagnosis/signature-hits"
#   /diagnosis/provider-outliers              providers whose job failure rate is an outlier now (history recorder)
PROVIDER_OUTLIERS = "/diagnosis/provider-outliers"


# -- events that failed ------------------------------------------------------------------------------------------
#   /events/retries/r-<seq>                   an event set aside after a failure, waiting for its next try
#   /events/dead-letters                      (data: how many events ever became dead letters)
#   /events/dead-letters/d-<seq>              an event that kept failing, with its error, for operators
EVENT_RETRIES = "/events/retries"
DEAD_LETTERS = "/events/dead-letters"


def event_retry(ident: str) -> str:
    return f"{EVENT_RETRIES}/{ident}"


def dead_letter(ident: str) -> str:
    return f"{DEAD_LETTERS}/{ident}"
