"""The codec server: lets an authorized operator read encrypted payloads in
the Temporal Web UI (which calls it from the browser) or the `temporal` CLI
(`--codec-endpoint`).

It speaks Temporal's remote codec protocol: `POST <base>/encode` and
`POST <base>/decode` with a JSON body `{"payloads": [...]}` (payloads in
protobuf JSON), answering the same shape. Every request must carry
`Authorization: Bearer <LEDGERFLOW_CODEC_SERVER_TOKEN>`; the Web UI sends it
when "Pass access token" is set. CORS answers only the configured Web UI
origin. Standard library only: it binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from ledgerflow.codec import CodecError, EncryptionCodec

MAX_BODY = 4 * 1024 * 1024


class CodecServer(ThreadingHTTPServer):
    """Bounded: at most `max_connections` connections are served at once (one
    thread each; a connection beyond them is closed at once), and a
    connection that sends nothing for `socket_timeout_s` is closed, so idle
    or slow unauthenticated sockets cannot pile up threads (issue 12, finding 13)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        codec: EncryptionCodec,
        token: str,
        ui_origins: tuple[str, ...],
        *,
        socket_timeout_s: float = 10.0,
        max_connections: int = 32,
    ) -> None:
        if not token:
            raise ValueError("the codec server needs a token (LEDGERFLOW_CODEC_SERVER_TOKEN)")
        super().__init__(address, _Handler)
        self.codec = codec
        self.token = token
        self.ui_origins = ui_origins
        self.socket_timeout_s = socket_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Every slot is busy: refuse this connection rather than grow.
            self.shutdown_request(request)
            return
        try:
            request.settimeout(self.socket_timeout_s)
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="codec-server", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no payloads, not even their sizes, in the logs

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin in self.server.ui_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header(
                "Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization"
            )

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.end_headers()

    def do_POST(self) -> None:
        operation = self.path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            self._reply(404, {"error": "POST .../encode or .../decode"})
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
            self._reply(401, {"error": "a valid bearer token is required"})
            return
        raw_length = self.headers.get("Content-Length") or "0"
        length = int(raw_length) if raw_length.isascii() and raw_length.isdigit() else -1
        if not 0 < length <= MAX_BODY:
            self._reply(400, {"error": f"a JSON body of 1 to {MAX_BODY} bytes is required"})
            return
        try:
            payloads = json_format.Parse(self.rfile.read(length), Payloads())
            codec = self.server.codec
            convert = codec.seal if operation == "encode" else codec.open
            result = Payloads(payloads=[convert(p) for p in payloads.payloads])
        except (json_format.ParseError, CodecError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, json_format.MessageToDict(result))
