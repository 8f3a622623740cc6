"""The files of the devstack stand-in project, and of a matching nova stand-in.

stack.sh reads `localrc`, starts one fake service per ENABLED_SERVICES entry (a Python process that imports the
service's project code from the workspace, so broken code fails to start), writes `screen-<service>.log` per
service into SCREEN_LOGDIR and syslog lines to the node's syslog. exercise.sh runs exercises/*.sh, which check
the services and execute the code under test (nova's `compute.boot`), so a broken change fails the gate.
Fault switches in localrc (FAULT_* below) make a service fail to start or a known intermittent bug hit a run.

Syslog on nodes: the lines go to syslog through `/dev/log` when the node has one (a real VM: rsyslog or journald
stores them); the simulated nodes run no syslog daemon, so the lines are appended, in syslog's format, to
`~/syslog`, which is where the executor reads a node's syslog first. Relative paths in localrc (SCREEN_LOGDIR,
LOGFILE, DATA_DIR) are taken from the login's home: simulated nodes share the host's /opt.
"""

from __future__ import annotations

STACK_SH = r"""#!/bin/bash
# devstack stand-in: bring up fake OpenStack services from the projects in the workspace.
set -eu
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
WORKSPACE=${GK_WORKSPACE:-$(cd "$TOP_DIR/../.." && pwd)}
source "$TOP_DIR/functions"
if [ -f "$TOP_DIR/localrc" ]; then
    source "$TOP_DIR/localrc"
fi
SCREEN_LOGDIR=$(abspath "${SCREEN_LOGDIR:-logs}")
LOGFILE=$(abspath "${LOGFILE:-$SCREEN_LOGDIR/stack.sh.log}")
DATA_DIR=$(abspath "${DATA_DIR:-data}")
ENABLED_SERVICES=${ENABLED_SERVICES:-key,g-api,n-api}
# fault switch of a broken server (its cloud gave it no /dev/kvm): a marker file on the node, not the job's config
GK_FAULT_BROKEN_SERVER=$([ -f "$HOME/gk-broken-server" ] && echo 1 || true)
mkdir -p "$SCREEN_LOGDIR" "$DATA_DIR" "$(dirname "$LOGFILE")"
exec > >(tee -a "$LOGFILE") 2>&1

echo "stack.sh: workspace $WORKSPACE"
echo "stack.sh: services $ENABLED_SERVICES"
echo "stack.sh: keystone admin password is ${ADMIN_PASSWORD:-unset}"
gk_syslog stack.sh "starting devstack with $ENABLED_SERVICES"

IFS=, read -r -a services <<< "$ENABLED_SERVICES"
for svc in "${services[@]}"; do
    project=$(service_project "$svc")
    echo "stack.sh: starting $svc from $project"
    gk_syslog stack.sh "starting $svc"
    rm -f "$DATA_DIR/$svc.ready"
    GK_FAULT_SERVICE_FAIL=${GK_FAULT_SERVICE_FAIL:-} GK_FAULT_FLAKY_BUG=${GK_FAULT_FLAKY_BUG:-} \
        GK_FAULT_BROKEN_SERVER=$GK_FAULT_BROKEN_SERVER \
        python3 "$TOP_DIR/tools/fake_service.py" "$svc" "$WORKSPACE/$project" "$DATA_DIR" \
        > "$SCREEN_LOGDIR/screen-$svc.log" 2>&1 < /dev/null &
    echo $! > "$DATA_DIR/$svc.pid"
done

for svc in "${services[@]}"; do
    for _ in $(seq 100); do
        [ -f "$DATA_DIR/$svc.ready" ] && break
        if ! kill -0 "$(cat "$DATA_DIR/$svc.pid")" 2>/dev/null; then
            echo "stack.sh: $svc failed to start; its log says:"
            tail -n 20 "$SCREEN_LOGDIR/screen-$svc.log"
            gk_syslog stack.sh "$svc failed to start"
            exit 1
        fi
        sleep 0.1
    done
    [ -f "$DATA_DIR/$svc.ready" ] || { echo "stack.sh: $svc did not come up within 10s"; exit 1; }
    echo "stack.sh: $svc is up"
done
gk_syslog stack.sh "devstack is up"
echo "stack.sh completed"
"""

EXERCISE_SH = r"""#!/bin/bash
# devstack stand-in: run every exercise against the running services and the code under test.
set -u
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
WORKSPACE=${GK_WORKSPACE:-$(cd "$TOP_DIR/../.." && pwd)}
source "$TOP_DIR/functions"
if [ -f "$TOP_DIR/localrc" ]; then
    source "$TOP_DIR/localrc"
fi
DATA_DIR=$(abspath "${DATA_DIR:-data}")
GK_FAULT_FLAKY_BUG=${GK_FAULT_FLAKY_BUG:-}
export WORKSPACE DATA_DIR ENABLED_SERVICES GK_FAULT_FLAKY_BUG
failed=0
for ex in "$TOP_DIR"/exercises/*.sh; do
    name=$(basename "$ex" .sh)
    if bash "$ex"; then
        echo "exercise $name: PASS"
        gk_syslog exercise.sh "$name passed"
    else
        echo "exercise $name: FAIL"
        gk_syslog exercise.sh "$name failed"
        failed=1
    fi
done
exit $failed
"""

FUNCTIONS = r"""# shared by stack.sh and exercise.sh
abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$HOME/$1" ;;
    esac
}

# syslog through /dev/log when the node has one; the simulated nodes have none: append to ~/syslog
gk_syslog() {
    if [ -S /dev/log ]; then
        logger -t "$1" -- "$2"
    else
        printf '%s %s %s[%s]: %s\n' "$(date '+%b %e %H:%M:%S')" "$(hostname)" "$1" "$$" "$2" >> "$HOME/syslog"
    fi
}

service_project() {
    case "$1" in
        n-*) echo openstack/nova ;;
        g-*) echo openstack/glance ;;
        key) echo openstack/keystone ;;
        horizon) echo openstack/horizon ;;
        *) echo "openstack/$1" ;;
    esac
}
"""

FAKE_SERVICE = r'''"""A fake OpenStack service: imports its project's code from the workspace, then logs a heartbeat."""

import os
import socket
import sys
import time
import traceback


def syslog(tag, message):
    if os.path.exists("/dev/log"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(f"<14>{tag}[{os.getpid()}]: {message}".encode(), "/dev/log")
        return
    with open(os.path.expanduser("~/syslog"), "a") as f:
        stamp = time.strftime("%b %e %H:%M:%S")
        f.write(f"{stamp} {socket.gethostname()} {tag}[{os.getpid()}]: {message}\n")


def main():
    name, project_dir, data_dir = sys.argv[1:4]
    package = os.path.basename(project_dir.rstrip("/"))
    print(f"{name}: starting from {project_dir}", flush=True)
    if os.path.exists(os.path.join(project_dir, package, "__init__.py")):
        sys.path.insert(0, project_dir)
        try:
            __import__(package)
        except Exception:
            traceback.print_exc()
            print(f"{name}: ERROR: cannot load {package}", flush=True)
            syslog(name, f"cannot load {package}")
            return 1
        print(f"{name}: loaded {package}", flush=True)
    else:
        print(f"{name}: {project_dir} has no {package} package; running without it", flush=True)
    if name == os.environ.get("GK_FAULT_SERVICE_FAIL"):  # fault switch: this service cannot start
        print(f"{name}: connecting to the message queue at 127.0.0.1:5672", flush=True)
        print(f"{name}: ERROR: AMQP server on 127.0.0.1:5672 is unreachable: [Errno 111] Connection refused",
              flush=True)
        syslog(name, "cannot reach the message queue")
        return 1
    if name == "n-cpu" and os.environ.get("GK_FAULT_BROKEN_SERVER"):  # fault switch: the server lacks /dev/kvm
        print(f"{name}: ERROR: libvirt: cannot open /dev/kvm: No such device", flush=True)
        syslog(name, "no /dev/kvm")
        return 1
    if name == "n-cpu" and os.environ.get("GK_FAULT_FLAKY_BUG"):  # fault switch: a known intermittent bug
        print(f"{name}: ERROR nova.compute.manager [instance: exercise-vm] Timeout waiting for vif plugging "
              "callback for instance exercise-vm", flush=True)
    syslog(name, "started")
    with open(os.path.join(data_dir, name + ".ready"), "w") as f:
        f.write(str(os.getpid()))
    n = 0
    # a node whose processes share the host (loopback sim nodes) is gone when its directories are: stop then,
    # and after two hours at most, so a fake service never outlives its node
    while os.path.isdir(data_dir) and n < 7200:
        n += 1
        print(f"{name}: heartbeat {n}", flush=True)
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

EXERCISE_SERVICES = r"""#!/bin/bash
# every enabled service is still running
set -u
IFS=, read -r -a services <<< "$ENABLED_SERVICES"
for svc in "${services[@]}"; do
    if ! kill -0 "$(cat "$DATA_DIR/$svc.pid" 2>/dev/null)" 2>/dev/null; then
        echo "services: $svc is not running"
        exit 1
    fi
done
echo "services: all ${#services[@]} running"
"""

EXERCISE_COMPUTE = r"""#!/bin/bash
# boot a server with the nova code under test
set -u
NOVA_DIR=$WORKSPACE/openstack/nova
if [ -n "${GK_FAULT_FLAKY_BUG:-}" ]; then  # fault switch: the known intermittent bug hits this run
    echo "compute: server exercise-vm went to ERROR: the network did not come up in time"
    exit 1
fi
if [ ! -f "$NOVA_DIR/nova/compute.py" ]; then
    echo "compute: nova has no compute module; nothing to exercise"
    exit 0
fi
PYTHONPATH=$NOVA_DIR python3 - <<'EOF'
from nova import compute
state = compute.boot("exercise-vm")
print(f"compute: boot returned {state!r}")
assert state == "ACTIVE", f"expected ACTIVE, got {state!r}"
EOF
"""

DEVSTACK_FILES: dict[str, tuple[str, bool]] = {  # path -> (text, executable)
    "stack.sh": (STACK_SH, True),
    "exercise.sh": (EXERCISE_SH, True),
    "functions": (FUNCTIONS, False),
    "tools/fake_service.py": (FAKE_SERVICE, False),
    "exercises/services.sh": (EXERCISE_SERVICES, True),
    "exercises/compute.sh": (EXERCISE_COMPUTE, True),
    "README": ("A devstack stand-in for gatekeeper's demos and tests (gatekeeper.sim.devstack).\n", False),
}

NOVA_COMPUTE = '''"""nova stand-in: the compute API the devstack stand-in's exercise calls."""


def boot(name):
    if not name:
        raise ValueError("a server needs a name")
    return "ACTIVE"
'''

NOVA_FILES: dict[str, tuple[str, bool]] = {
    "nova/__init__.py": ('"""nova stand-in."""\n', False),
    "nova/compute.py": (NOVA_COMPUTE, False),
}

# What a change that breaks nova looks like, for tests and demos: boot() returns the wrong state.
BROKEN_NOVA_COMPUTE = NOVA_COMPUTE.replace('return "ACTIVE"', 'return "ERROR"')
# A change that breaks nova's import: every nova service fails to start.
UNLOADABLE_NOVA_INIT = '"""nova stand-in."""\n\nfrom nova.compute import boot_all  # no such function\n'

# Fault switches, set in the job's localrc (devstack: localrc: ...), for tests and benchmarks of diagnosis:
FAULT_SERVICE_FAIL = "GK_FAULT_SERVICE_FAIL"  # a service name: it cannot reach the message queue and exits
FAULT_FLAKY_BUG = "GK_FAULT_FLAKY_BUG"  # non-empty: the known vif-plugging timeout hits the compute exercise
FLAKY_BUG_LINE = "Timeout waiting for vif plugging callback"  # what n-cpu logs when it does
BROKEN_SERVER_MARKER = "gk-broken-server"  # a file in the login's home on a node: n-cpu finds no /dev/kvm there
