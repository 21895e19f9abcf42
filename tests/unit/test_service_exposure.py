"""The app's own guard against serving without keys to other machines (any ASGI server)."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.exposure import Exposed, check_listening, listening_hosts
from service.settings import Settings, get_settings


def client_for(base_url: str, **settings: object) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: Settings(**settings)
    return TestClient(app, base_url=base_url)


def test_a_request_on_a_reachable_address_gets_401_without_keys() -> None:
    # The test client sends the base URL's host as the address the request arrived on.
    with client_for("http://10.1.2.3", api_keys=[]) as exposed:
        refused = exposed.get("/healthz")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert "HETEROLORA_API_KEYS" in refused.json()["error"]["message"]
    with client_for("http://127.0.0.1", api_keys=[]) as loopback:
        assert loopback.get("/healthz").status_code == 200
    with client_for("http://10.1.2.3", api_keys=[], auth="disabled") as open_on_purpose:
        assert open_on_purpose.get("/healthz").status_code == 200
    with client_for("http://10.1.2.3", api_keys=["k:" + "x" * 16]) as keyed:
        assert keyed.get("/healthz").status_code == 200 and keyed.get("/jobs/abc").status_code == 401


def test_listening_sockets_are_found_and_judged() -> None:
    with socket.socket() as wide, socket.socket() as narrow:
        wide.bind(("0.0.0.0", 0))
        narrow.bind(("127.0.0.1", 0))
        narrow.listen()
        assert "127.0.0.1" in listening_hosts() and "0.0.0.0" not in listening_hosts()  # bound, not listening
        check_listening(Settings(api_keys=[]))
        wide.listen()
        assert "0.0.0.0" in listening_hosts()
        with pytest.raises(Exposed, match=r"refusing to serve on 0\.0\.0\.0"):
            check_listening(Settings(api_keys=[]))
        check_listening(Settings(api_keys=[], auth="disabled"))
        check_listening(Settings(api_keys=["k:" + "x" * 16]))
