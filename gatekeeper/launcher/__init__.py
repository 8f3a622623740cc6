"""The node launcher: node requests in ZooKeeper fulfilled from ready nodes or by launching on providers.

    launcher.py   the service: one decision thread woken by ZooKeeper watches; hand-out, min-ready, failover
    provider.py   a provider as managed: its nodes, quota, and the workers that boot, scan and delete
    providers/    the narrow adapter interface (create, poll, delete, list, snapshot) and its openstack and
                  static implementations
    poller.py     one server listing per provider per interval, shared by every boot and delete waiting on it
    images.py     image builds (boot base image, run the prepare script over SSH, snapshot, delete template)
    cleanup.py    expired holds, vanished consumers, leaked servers and images, superseded images
    client.py     the consumer's API (request, wait, lock, ssh with pinned host keys, release, autohold)
    model.py      the records: Node, NodeRequest, ImageBuild, Autohold
    cli.py        `gatekeeper launcher|nodes|images|requests|hold|release|delete-node|autohold`

ZooKeeper layout (see gatekeeper.zk.paths): requests are ephemeral sequential znodes named
`<priority>-<seq>`; nodes live under /nodepool/nodes/<id> with their lock at /nodepool/nodes/<id>/lock; a ready
node also has an entry /nodepool/ready/<label>/<ms>-<provider>-<id> (hand-out = one transaction that removes the
entry, marks the node allocated and fulfils the request); a consumer's release of a used node creates
/nodepool/released/<id>. Only the holder of a provider's kazoo Lock launches on that provider; any launcher hands
out any ready node.
"""
