"""The CLI's side of the REST API: finds the farm's controller through .farmhand/ and turns
HTTP failures into ``ApiError``s that say what to do.

It speaks HTTP/1.1 with the standard library's ``http.client`` rather than httpx: every
verb but `up` is a short-lived process whose time is mostly imports, and httpx alone cost
more than the rest of a `farmhand status` (bench/cli_speed.py measures it).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from farmhand.errors import ApiError
from farmhand.store.statedir import StateDir

STREAM_CHUNK = 64 * 1024


class StreamEnded(ApiError):
    """A followed stream (events, a log) was cut by the other side: usually the farm stopped."""


class ApiClient:
    def __init__(self, state: StateDir, timeout: float = 30.0) -> None:
        self.state = state
        info = state.read_api()
        self.url: str = info["url"]
        self.pid: int = int(info.get("pid", 0))
        self.farm_file: str = str(info.get("farm_file", ""))
        self.timeout = timeout
        self._token = state.read_token()
        address = urlsplit(self.url)
        self._host = address.hostname or "127.0.0.1"
        self._port = address.port or 80

    def __repr__(self) -> str:
        return f"<ApiClient {self.url}>"

    def dashboard_link(self) -> str:
        """The dashboard's address with the token in the fragment (never sent to a server)."""
        return f"{self.url}/#token={self._token}"

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._send("POST", path, {}, json.dumps(body or {}).encode())

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        """The body as it arrives; an error status raises the API's own message, and a
        connection cut mid-stream raises ``StreamEnded``."""
        connection, response = self._open("GET", path, params, None, timeout=None)
        try:
            self._raise_for(response)
            while True:
                try:
                    chunk = response.read1(STREAM_CHUNK)
                except (http.client.HTTPException, OSError) as error:
                    raise StreamEnded(f"the controller at {self.url} closed the stream ({error})") from error
                if not chunk:
                    return
                yield chunk
        finally:
            connection.close()

    def _send(self, method: str, path: str, params: dict[str, Any], body: bytes | None = None) -> Any:
        connection, response = self._open(method, path, params, body, self.timeout)
        try:
            self._raise_for(response)
            try:
                return json.loads(response.read())
            except (http.client.HTTPException, OSError, ValueError) as error:
                raise self._unreachable(error) from error
        finally:
            connection.close()

    def _open(self, method: str, path: str, params: dict[str, Any], body: bytes | None,
              timeout: float | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, path + (f"?{query}" if query else ""), body=body, headers=headers)
            return connection, connection.getresponse()
        except (http.client.HTTPException, OSError) as error:
            connection.close()
            raise self._unreachable(error) from error

    def _raise_for(self, response: http.client.HTTPResponse) -> None:
        if response.status < 400:
            return
        text = response.read().decode(errors="replace")
        try:
            message = json.loads(text).get("error") or text
        except (ValueError, AttributeError):
            message = text
        raise ApiError(str(message).strip() or f"the API answered {response.status} {response.reason}",
                       response.status)

    def _unreachable(self, error: Exception) -> ApiError:
        return ApiError(f"the controller at {self.url} does not answer ({error or type(error).__name__}); "
                        f"is the farm up? (`farmhand up`; its log is {self.state.controller_log})")
