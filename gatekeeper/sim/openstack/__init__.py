"""A simulated OpenStack (Keystone v3, Nova v2.1, Glance v2 subset) whose servers are real SSH hosts.

    hosts.py   SSH hosts: network namespaces on a private 169.254.N.0/24 bridge (root) or sshd on 127.x
    cloud.py   one cloud's state (servers, images, keypairs, limits) and its fault knobs
    api.py     the HTTP front openstacksdk talks to, plus /sim/faults, /sim/state and /sim/limits
    sim.py     several clouds sharing one host backend, with a clouds.yaml for them

`gatekeeper cloud-sim` (gatekeeper.cmd.cloud_sim) runs it standalone.
"""
