"""The commit-msg hook Gerrit hands out (`<web>/tools/hooks/commit-msg`, `scp -O host:hooks/commit-msg`), and the
small HTTP side of the simulator that serves it.

The hook adds a `Change-Id: I<40 hex>` footer to every commit message that has none, as Gerrit's does: git-review
installs it with `git review -s`, and a push without that footer is rejected.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("gatekeeper.sim.gerrit.http")

COMMIT_MSG_HOOK = r"""#!/bin/sh
# commit-msg hook: add a Change-Id footer (Change-Id: I<40 hex>) to the commit message when it has none, so that
# Gerrit can match new patch sets of a change to it. Disable it for one repository with
# `git config gerrit.createChangeId false`.
set -u

if test "$#" != 1; then
  echo "$0: expected one argument, the commit message file" >&2
  exit 1
fi
msg=$1

if test "$(git config --bool --get gerrit.createChangeId)" = "false"; then
  exit 0
fi

# Nothing to do for a message that is empty once comments are removed (git aborts such a commit anyway).
if ! git stripspace --strip-comments <"$msg" | grep -q .; then
  exit 0
fi

# Keep an existing Change-Id (amended commits).
if git interpret-trailers --parse <"$msg" | grep -qi '^Change-Id:'; then
  exit 0
fi

random=$( (git var GIT_COMMITTER_IDENT; cat "$msg"; date +%s%N; echo "$$") | git hash-object --stdin)
if ! git -c trailer.ifexists=doNothing interpret-trailers --in-place --where end \
     --trailer "Change-Id: I${random}" "$msg"; then
  echo "$0: cannot add a Change-Id to $msg" >&2
  exit 1
fi
"""

HOOK_PATHS = {"/tools/hooks/commit-msg": COMMIT_MSG_HOOK, "/tools/hooks/commit-msg/": COMMIT_MSG_HOOK}
SCP_FILES = {"hooks/commit-msg": COMMIT_MSG_HOOK, "/hooks/commit-msg": COMMIT_MSG_HOOK}


class _Handler(BaseHTTPRequestHandler):
    server_version = "GerritSimulator"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = HOOK_PATHS.get(self.path.split("?", 1)[0])
        if body is None:
            self._send(404, "text/plain; charset=utf-8", f"Not Found: {self.path}\n")
            return
        self._send(200, "application/octet-stream", body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HookServer:
    """Serves the commit-msg hook over HTTP on host:port (port 0 picks a free one)."""

    def __init__(self, host: str, port: int) -> None:
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        # a short poll: shutdown() waits for it (the default half second is paid by every stop)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gerrit-sim-http", daemon=True)

    def start(self) -> HookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
