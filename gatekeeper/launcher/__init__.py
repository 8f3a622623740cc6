"""The node launcher: node requests in ZooKeeper fulfilled from ready nodes or by launching on providers.

    launcher.py   the service: one decision thread woken by ZooKeeper watches and its workers
    assigning.py  assignment decisions: hand-out from ready nodes, which provider launches a request, failover;
                  writes sent as decided and answered together per pass
    launching.py  launch decisions: plans, min-ready, room at max-servers, launch results, drain, max-ready-age
    events.py     the typed events of the main loop's queue (launch results, deleted servers, calls, wake, stop)
    health.py     a provider's circuit breaker on boot failures and the figures operators read
    lifecycle.py  a managed node's writes: ready, back to ready, used, deleting, gone
    provider_manager.py  a provider as managed: its nodes, quota, and the workers that boot, scan and delete
    providers/    the narrow adapter interface (create, poll, delete, list, snapshot; quota, adoption, how its
                  servers behave) and its openstack and static implementations
    poller.py     one server listing per provider per interval, shared by every boot and delete waiting on it
    images.py     image builds (boot base image, run the prepare script over SSH, snapshot, delete template),
                  and falling back from an upload the cloud lost
    cleanup.py    from ZooKeeper's records and the cloud's list: expired holds, vanished consumers, deletes to
                  retry, leaked servers and images, superseded images, unreadable records
    access.py     developers' SSH keys on held nodes: installed and removed as access grants say
    client.py     the consumer's API (request, wait, lock, ssh with pinned host keys, release, autohold)
    model.py      the records (they live in gatekeeper.zk.node_records): Node, NodeRequest, ImageBuild, ...

Its commands (`gatekeeper launcher|nodes|images|requests|hold|release|delete-node|autohold|hold-access` and
`providers|drain|undrain`) are gatekeeper.cmd.launcher and gatekeeper.cmd.providers.

Every ZooKeeper read and write of the node pool goes through gatekeeper.zk.nodes.NodeStore (and the consumer's
side, gatekeeper.zk.node_consumer.NodeConsumer).

ZooKeeper layout (see gatekeeper.zk.paths): requests are ephemeral sequential znodes named
`<priority>-<seq>`; nodes live under /nodepool/nodes/<id>, their consumer's lock the ephemeral
/nodepool/nodes/<id>/lock/holder made in the transaction that takes them; a ready
node also has an entry /nodepool/ready/<label>/<ms>-<provider>-<id> (hand-out = one transaction that removes the
entry, marks the node allocated and fulfils the request, and writes the records of min-ready replacements); a
consumer's release of a used node creates /nodepool/released/<id> (removed in batches once the node is gone).
Only the holder of a provider's kazoo Lock launches on that provider; any launcher hands out any ready node.
"""
