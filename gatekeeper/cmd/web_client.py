"""A small client for the web API, turning every failure into an `ApiError` with a sentence and an exit code."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

# exit codes scripts can rely on (also listed in `gatekeeper status --help`)
EXIT_OK = 0
EXIT_FAILURE = 1  # the server answered with an error not covered below
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NOT_FOUND = 4  # unknown change, build or pipeline
EXIT_AUTH = 5  # missing or wrong admin token
EXIT_UNREACHABLE = 6  # no web server at the URL

EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 failed, 2 usage, 3 config error, 4 not found (change, build, pipeline), "
    "5 bad or missing token, 6 server unreachable"
)


ADMIN_TIMEOUT = 65.0


class ApiError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class WebClient:
    def __init__(self, url: str, token: str | None = None, user: str | None = None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.user = user
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return self._call("GET", path + (f"?{query}" if query else ""))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        # admin requests wait for the scheduler's answer (30 s at most on the server): wait longer than that
        return self._call("POST", path, body, timeout=max(self.timeout, ADMIN_TIMEOUT))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.user:
            headers["X-Gatekeeper-User"] = self.user
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            finally:
                exc.close()
            code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(exc.code, EXIT_FAILURE)
            raise ApiError(f"{self.url}: {message}", code) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise ApiError(f"cannot reach the gatekeeper web server at {self.url}: {reason}", EXIT_UNREACHABLE) \
                from None
        except TimeoutError:
            raise ApiError(f"{self.url}: no answer within {timeout or self.timeout:.0f}s", EXIT_FAILURE) from None
        except ConnectionError as exc:
            raise ApiError(f"cannot reach the gatekeeper web server at {self.url}: {exc}", EXIT_UNREACHABLE) \
                from None
