"""The executor: runs one job of one queue item on a pool node over SSH and brings the logs home.

    masking.py    secrets out of consoles and logs
    console.py    the timestamped console of a build, and its live HTTP stream
    remote.py     an SSH connection to a node (pinned host key) that runs steps in their own process group
    transfer.py   workspace to the node (tar over SSH, or rsync with a pinned known_hosts)
    workspace.py  every project of the job at the item's frozen repo state, from a local git cache
    devstack.py   localrc / local.conf from job variables
    logs.py       copy-back, renaming, compression, index.html, and the log store
    nodes.py      where nodes come from: the launcher (ZooKeeper node requests) or a fixed list
    build.py      one build from request to result
    service.py    the service: takes build requests from ZooKeeper, several at once
"""
