"""SSH-reachable hosts that stand in for the simulated cloud's servers.

Two backends behind one interface (:class:`HostBackend`): :class:`NetnsBackend` gives every server its own
network namespace on a private bridge in 169.254.0.0/16 (needs root), :class:`LoopbackBackend` runs one sshd per
server on its own 127.x address. A server's "disk" is its home directory; a snapshot is a tar of it, and a server
booted from a snapshot starts with that home.

A boot starts a blank host (address, sshd, host key) and binds it to its server (hostname, authorized keys, disk).
A backend can keep blank hosts started ahead (:attr:`HostBackend.spares`): a boot then only binds one, which is
the same to anyone who logs in.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import fcntl
import io
import itertools
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from gatekeeper.child_process import start_tied
from gatekeeper.sim.openstack.spares import SparePool

log = logging.getLogger("gatekeeper.sim.openstack.hosts")

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
BLANK_HOSTNAME = "localhost"  # a host's name until it is bound to a server
HOSTNAME_MAX = 64  # bytes of a hostname the kernel takes; a longer name is cut there, as /proc/sys/kernel/hostname does
_instances = itertools.count(1)
_open_backends: weakref.WeakSet[HostBackend] = weakref.WeakSet()


class HostBootError(Exception):
    """A host could not be started; the simulator turns this into a server fault."""


@dataclass
class HostSpec:
    """What a server needs from its host: identity, who may log in, what its disk holds."""

    server_id: str
    hostname: str
    authorized_keys: str = ""
    disk: bytes | None = None
    ssh: bool = True


@dataclass
class Host:
    """A started host; `spec` is its server's once bound (a blank one's until then)."""

    spec: HostSpec
    address: str
    port: int
    workdir: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def home(self) -> str:
        return os.path.join(self.workdir, "home")


def _run(*cmd: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise HostBootError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")


def _write_host_key(path: str, comment: str) -> None:
    """A fresh ed25519 host key in OpenSSH format (in-process: no ssh-keygen fork per host)."""
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    with open(path + ".pub", "wb") as f:
        f.write(key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH) + f" {comment}\n".encode())


def _run_batch(commands: list[str], netns: str | None = None) -> None:
    """Several `ip` commands in one process (optionally all inside a namespace)."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    res = subprocess.run(cmd, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if res.returncode != 0:
        raise HostBootError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")


_CLONE_NEWUTS = 0x04000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise HostBootError(f"cannot enter the UTS namespace of {what}: {os.strerror(err)}")


def set_hostname_of(pid: int, hostname: str) -> None:
    """Set the hostname of the UTS namespace process `pid` is in, from this thread (no process forked per boot):
    the thread joins that namespace, names it and comes back. Refuses when `pid` shares this process's hostname."""
    if os.stat(f"/proc/{pid}/ns/uts").st_ino == os.stat("/proc/self/ns/uts").st_ino:
        raise HostBootError(f"process {pid} has no hostname of its own (it would rename this machine)")
    own = os.open("/proc/thread-self/ns/uts", os.O_RDONLY)
    try:
        target = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
        try:
            _setns(target, f"process {pid}")
            try:
                socket.sethostname(hostname.encode()[:HOSTNAME_MAX])
            finally:
                _setns(own, "this thread")
        finally:
            os.close(target)
    finally:
        os.close(own)


def _wait_listening(address: str, port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise HostBootError(f"sshd for {address}:{port} exited with {proc.returncode}: {err.strip()}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.005)
    raise HostBootError(f"sshd for {address}:{port} did not listen within {timeout}s")


def _descendants(pid: int) -> list[int]:
    """All live descendants of pid, found through /proc (children first in the result's reverse)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for child in parents.get(p, []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def unpack_disk(disk: bytes | None, home: str) -> None:
    os.makedirs(home, exist_ok=True)
    if disk:
        with tarfile.open(fileobj=io.BytesIO(disk)) as tar:
            # Extraction filters came in Python 3.11.4; Debian 12's python3 is 3.11.2. The disk is pack_disk's.
            tar.extractall(home, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))


def pack_disk(home: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(home)):
            tar.add(os.path.join(home, name), arcname=name)
    return buf.getvalue()


class HostBackend:
    """Starts and ends SSH hosts; subclasses decide where the sshd lives."""

    port = 22

    def __init__(self, workdir: str | None = None) -> None:
        self.instance = next(_instances)
        self.tag = f"gk{os.getpid():06x}{self.instance:x}"
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"{self.tag}-hosts-")
        self.hosts: dict[str, Host] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._spare_names = itertools.count(1)
        # none until asked for (spares.set_target); a boot takes one when there is one
        self.spares: SparePool[Host] = SparePool(self._start_spare, self._end, name=f"{self.tag}-spares")
        os.makedirs("/run/sshd", exist_ok=True) if os.geteuid() == 0 else None
        _open_backends.add(self)

    # -- interface -------------------------------------------------------------------------------
    def boot(self, spec: HostSpec) -> str:
        """A host for spec: a spare one if there is one (and spec.ssh), else one started now; returns its address
        (sshd listens on self.port unless spec.ssh is off)."""
        with self.spares.booting():
            host = self.spares.take() if spec.ssh else None
            while host is not None and any(proc.poll() is not None for proc in host.procs):
                log.warning("spare host %s: its sshd ended while it waited; taking another", host.address)
                try:  # (a spare whose sshd died would boot a server nobody reaches)
                    self._end(host)
                except Exception:
                    log.exception("spare host %s: ending it", host.address)
                host = self.spares.take()
            if host is None:
                host = self._start(spec.server_id, spec.ssh)
            self.hosts[spec.server_id] = host
            try:
                self._bind(host, spec)
            except Exception:
                self.destroy(spec.server_id)
                raise
            return host.address

    def destroy(self, server_id: str) -> None:
        """End every process of the host and remove its network and files."""
        host = self.hosts.pop(server_id, None)
        if host is not None:
            self._end(host)

    def snapshot(self, server_id: str) -> bytes:
        """The host's disk (its home directory) as a tar, for an image."""
        host = self.hosts[server_id]
        return pack_disk(host.home)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.spares.close()
        for server_id in list(self.hosts):
            try:
                self.destroy(server_id)
            except Exception:
                log.exception("destroying host %s", server_id)
        self._close_network()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _close_network(self) -> None:
        pass

    # -- what a backend does ---------------------------------------------------------------------
    def _start(self, name: str, ssh: bool) -> Host:
        """A blank host in the directory `name`: address, host key, and sshd listening when `ssh`; a host that
        fails to come up is ended (nothing of it is left)."""
        host = self._new_host(name)
        try:
            self._bring_up(host, ssh)
        except Exception:
            self._end(host)
            raise
        return host

    def _new_host(self, name: str) -> Host:
        """The host's address and directory (`_prepare`), nothing started yet."""
        raise NotImplementedError

    def _bring_up(self, host: Host, ssh: bool) -> None:
        """Its network, and its sshd when `ssh`."""
        raise NotImplementedError

    def _end(self, host: Host) -> None:
        """End every process of `host` and remove its network and files."""
        raise NotImplementedError

    def _bind(self, host: Host, spec: HostSpec) -> None:
        """Make a started host spec's server's: its disk in the home, who may log in, the name on its host key."""
        host.spec = spec
        unpack_disk(spec.disk, host.home)
        with open(os.path.join(host.workdir, "authorized_keys"), "w") as f:
            f.write(spec.authorized_keys)
        pub = os.path.join(host.workdir, "ssh_host_ed25519_key.pub")
        with open(pub) as f:
            key = f.read().split()[:2]
        with open(pub, "w") as f:
            f.write(" ".join(key) + f" {spec.hostname}\n")

    def _start_sshd(self, host: Host, argv: list[str]) -> None:
        """Start the host's sshd with `argv` (tied to this process) and wait until it listens."""
        proc = start_tied(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        host.procs.append(proc)
        _wait_listening(host.address, self.port, proc)

    def _start_spare(self) -> Host:
        return self._start(f"spare-{next(self._spare_names)}", ssh=True)

    # -- shared pieces ---------------------------------------------------------------------------
    def _prepare(self, name: str, address: str, extra_config: str = "", home_keys: bool = False) -> Host:
        """A blank host's directory, host key and sshd config; `home_keys`: also accept keys in the login's
        ~/.ssh/authorized_keys, as a cloud image does (only where the home is the host's own)."""
        hdir = os.path.join(self.workdir, name)
        os.makedirs(hdir, exist_ok=True)
        host = Host(spec=HostSpec(name, BLANK_HOSTNAME), address=address, port=self.port, workdir=hdir)
        os.makedirs(host.home, exist_ok=True)
        keyfile = os.path.join(hdir, "ssh_host_ed25519_key")
        _write_host_key(keyfile, BLANK_HOSTNAME)
        open(os.path.join(hdir, "authorized_keys"), "w").close()
        with open(os.path.join(hdir, "sshd_config"), "w") as f:
            f.write(
                f"ListenAddress {address}:{self.port}\n"
                f"HostKey {keyfile}\n"
                f"AuthorizedKeysFile {hdir}/authorized_keys{' .ssh/authorized_keys' if home_keys else ''}\n"
                f"PidFile none\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "PermitRootLogin prohibit-password\nStrictModes no\n"
                "ClientAliveInterval 10\nClientAliveCountMax 3\nLogLevel ERROR\n" + extra_config
            )
        return host


class LoopbackBackend(HostBackend):
    """One sshd per server on a distinct 127.x address; runs as any user (who is the only login user).

    A forced command puts each login in the server's own home directory; hostname and network are the host's.
    """

    def __init__(self, workdir: str | None = None) -> None:
        super().__init__(workdir)
        self.port = 22 if os.geteuid() == 0 else 2222
        # a /16 of 127/8 picked from the pid, so that concurrent processes rarely meet; bind-probed anyway
        self._net = (127, 64 + (os.getpid() + self.instance) % 160)
        self._next = itertools.count(1)

    def _address(self) -> str:
        for _ in range(2000):
            n = next(self._next)
            addr = f"{self._net[0]}.{self._net[1]}.{n // 250 % 250 + 1}.{n % 250 + 1}"
            s = socket.socket()
            try:
                s.bind((addr, self.port))
                return addr
            except OSError:
                continue
            finally:
                s.close()
        raise HostBootError("no free loopback address left")

    def _new_host(self, name: str) -> Host:
        with self._lock:
            address = self._address()
        # SHLVL=1 keeps the login user's bash from sourcing the host's ~/.bashrc around the forced command; the
        # forced command (the login wrapper) is written when the host is bound
        wrapper = os.path.join(self.workdir, name, "login")
        return self._prepare(name, address, f"Subsystem sftp {SFTP_SERVER}\nForceCommand {wrapper}\nSetEnv SHLVL=1\n")

    def _bring_up(self, host: Host, ssh: bool) -> None:
        if ssh:  # (tied: a killed simulator leaves no sshd behind)
            self._start_sshd(host, [SSHD, "-D", "-e", "-f", os.path.join(host.workdir, "sshd_config")])

    def _bind(self, host: Host, spec: HostSpec) -> None:
        super()._bind(host, spec)
        wrapper = os.path.join(host.workdir, "login")
        with open(wrapper, "w") as f:
            f.write(
                "#!/bin/sh\n"
                f'export HOME={shlex.quote(host.home)} GK_HOSTNAME={shlex.quote(spec.hostname)}\n'
                'cd "$HOME" || exit 1\n'
                'case "$SSH_ORIGINAL_COMMAND" in\n'
                f'  "") exec /bin/sh -l ;;\n  {SFTP_SERVER}|internal-sftp) exec {SFTP_SERVER} ;;\n'
                '  *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;\nesac\n'
            )
        os.chmod(wrapper, 0o755)

    def _end(self, host: Host) -> None:
        for proc in host.procs:
            _kill(list(reversed(_descendants(proc.pid))))
            _kill([proc.pid])
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
        shutil.rmtree(host.workdir, ignore_errors=True)


class NetnsBackend(HostBackend):
    """Each server is a network namespace with its own 169.254.N.x address on this backend's bridge.

    Inside: own hostname (UTS namespace), own PID namespace (sshd is PID 1, so killing it ends the host), and the
    server's home bind-mounted on /root. Names carry this process's pid so concurrent runs never collide, and
    names of dead processes are swept away.
    """

    LOCKFILE = "/run/gatekeeper-netns.lock"

    def __init__(self, workdir: str | None = None) -> None:
        if os.geteuid() != 0:
            raise HostBootError("the netns host backend needs root")
        sweep_stale_netns()
        super().__init__(workdir)
        self.bridge = f"{self.tag}b"
        # host addresses .2-.254; a freed one goes to the back of the line, so reuse is as late as possible
        self._free_octets = collections.deque(range(2, 255))
        with open(self.LOCKFILE, "a") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
            for octet in itertools.chain(range(16 + os.getpid() % 200, 250), range(16, 250)):
                if f" 169.254.{octet}." not in used:
                    break
            else:
                raise HostBootError("no free 169.254.N.0/24 subnet for a bridge")
            self.subnet = f"169.254.{octet}"
            # A fixed address: a Linux bridge otherwise takes the lowest address of its ports, so a server booted
            # or deleted can change it, and every host's ARP entry for the bridge then points nowhere until it
            # expires (tens of seconds in which nothing reaches the simulators). Locally administered, unique
            # to this subnet.
            _run("ip", "link", "add", self.bridge, "address", f"02:67:6b:a9:fe:{octet:02x}", "type", "bridge")
            _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")

    def _new_host(self, name: str) -> Host:
        with self._lock:
            if not self._free_octets:
                raise HostBootError(f"bridge {self.bridge} is full (253 hosts)")
            n = self._free_octets.popleft()
        veth = f"{self.tag}v{n:x}"
        address = f"{self.subnet}.{n}"
        ns = f"{veth}n"
        try:
            host = self._prepare(name, address, "Subsystem sftp internal-sftp\n", home_keys=True)
        except Exception:
            with self._lock:  # give the address back, or failed boots would fill the bridge
                self._free_octets.append(n)
            raise
        host.extra.update(netns=ns, veth=veth, octet=n)
        return host

    def _bring_up(self, host: Host, ssh: bool) -> None:
        ns, veth = host.extra["netns"], host.extra["veth"]
        _run_batch([f"netns add {ns}", f"link add {veth} type veth peer name eth0 netns {ns}",
                    f"link set {veth} master {self.bridge} up"])
        _run_batch([f"addr add {host.address}/24 dev eth0", "link set eth0 up", "link set lo up"], netns=ns)
        if ssh:
            # few processes per host: the shell's own echo blanks the (namespaced) hostname until the host is
            # bound to a server, unshare mounts proc;
            # sshd -r serves each connection without re-executing itself (cheaper keyscans and logins)
            # /opt and /var/log are the node's own too (devstack writes /opt/stack/logs), so that nodes, like
            # VMs, never see each other's files or the host's
            private = {"/opt": os.path.join(host.workdir, "opt"), "/var/log": os.path.join(host.workdir, "varlog")}
            for directory in private.values():
                os.makedirs(directory, exist_ok=True)
            mounts = " && ".join(f"mount --bind {src} {dst}" for dst, src in private.items())
            script = (f'echo {BLANK_HOSTNAME} > /proc/sys/kernel/hostname && '
                      f'mount --bind {host.home} /root && {mounts} && exec "$@"')
            # a killed simulator leaves no host: unshare --kill-child takes sshd along
            self._start_sshd(host, [
                "ip", "netns", "exec", ns, "unshare", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
                "sh", "-c", script, "sh", SSHD, "-D", "-e", "-r", "-f", os.path.join(host.workdir, "sshd_config")])

    def _bind(self, host: Host, spec: HostSpec) -> None:
        super()._bind(host, spec)
        if host.procs:  # unshare, in the host's UTS namespace (sshd is its child)
            set_hostname_of(host.procs[0].pid, spec.hostname)

    def _end(self, host: Host) -> None:
        ns = host.extra["netns"]
        for proc in host.procs:
            _kill([proc.pid])
        res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        _kill([int(p) for p in res.stdout.split()])
        for proc in host.procs:
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host.extra["veth"]], capture_output=True)
        shutil.rmtree(host.workdir, ignore_errors=True)
        # forget the old MAC for this address, or the next host on it is unreachable until ARP notices
        subprocess.run(["ip", "neigh", "flush", "to", host.address, "dev", self.bridge], capture_output=True)
        with self._lock:
            self._free_octets.append(host.extra["octet"])

    def _close_network(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale_netns() -> None:
    """Remove namespaces and links left by gatekeeper processes that no longer run (names carry the pid)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.split("\n")
    candidates = [n.split()[0] for n in names if n.strip()]
    candidates += [ln.split(":")[1].strip().split("@")[0] for ln in links if ln.count(":") >= 2]
    netns = set(candidates[: len([n for n in names if n.strip()])])
    for name in candidates:
        # our names are gk<pid as 6 hex digits><instance>...; leave anything else alone
        if not re.fullmatch(r"gk[0-9a-f]{6}[0-9a-f]+[bvn0-9a-f]*", name):
            continue
        if _pid_alive(int(name[2:8], 16)):
            continue
        if name in netns:
            res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            _kill([int(p) for p in res.stdout.split()])
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        else:
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def default_backend(workdir: str | None = None, kind: str = "auto") -> HostBackend:
    """netns when running as root (and it works), loopback otherwise; kind forces one."""
    if kind == "loopback" or (kind == "auto" and os.geteuid() != 0):
        return LoopbackBackend(workdir)
    try:
        return NetnsBackend(workdir)
    except HostBootError:
        if kind == "netns":
            raise
        log.warning("network namespaces unavailable; using loopback hosts")
        return LoopbackBackend(workdir)


@atexit.register
def _close_all() -> None:
    for backend in list(_open_backends):
        try:
            backend.close()
        except Exception:
            log.exception("closing host backend")
