"""The CLI's side of the REST API: finds the farm's controller through .farmhand/ and turns
HTTP failures into ``ApiError``s that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from farmhand.errors import ApiError
from farmhand.store.statedir import StateDir


class ApiClient:
    def __init__(self, state: StateDir, timeout: float = 30.0) -> None:
        self.state = state
        info = state.read_api()
        self.url: str = info["url"]
        self.pid: int = int(info.get("pid", 0))
        self.farm_file = Path(info.get("farm_file", ""))
        token = state.token_file.read_text().strip() if state.token_file.exists() else ""
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                                  headers={"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return f"<ApiClient {self.url}>"

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._send("POST", path, json=body or {})

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                self._raise_for(response, read=True)
                yield from response.iter_bytes()
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        self._raise_for(response)
        return response.json()

    def _raise_for(self, response: httpx.Response, read: bool = False) -> None:
        if response.status_code < 400:
            return
        if read:
            response.read()
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text
        raise ApiError(str(message), response.status_code)

    def _unreachable(self, error: Exception) -> ApiError:
        return ApiError(f"the controller at {self.url} does not answer ({error}); is the farm up? "
                        f"(`farmhand up`; its log is {self.state.controller_log})")
