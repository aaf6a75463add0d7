"""Payload encryption and the codec server, without Temporal: sealing,
rotation, tampering, and the remote codec protocol over real HTTP."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from temporalio.api.common.v1 import Payload

from ledgerflow.codec import ENCODING, KEY_ID, CodecError, EncryptionCodec, new_key, parse_keys
from ledgerflow.codec_server import CodecServer
from ledgerflow.config import Settings
from ledgerflow.converter import DATA_CONVERTER, data_converter

K1, K2 = new_key(), new_key()
SECRET = b'{"from_account":"alice","amount":1250}'


def plain() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=SECRET)


def test_a_sealed_payload_hides_its_data_and_names_its_key() -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{K1}"), "k1")
    sealed = codec.seal(plain())
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"k1"
    assert b"alice" not in sealed.SerializeToString() and b"1250" not in sealed.data
    assert codec.open(sealed) == plain()
    assert codec.seal(plain()).data != sealed.data, "a fresh nonce every time"


def test_keys_rotate_old_payloads_still_open_and_unknown_keys_do_not() -> None:
    old = EncryptionCodec(parse_keys(f"k1:{K1}"), "k1").seal(plain())
    rotated = EncryptionCodec(parse_keys(f"k1:{K1},k2:{K2}"), "k2")
    assert rotated.open(old) == plain()
    assert rotated.seal(plain()).metadata[KEY_ID] == b"k2"
    with pytest.raises(CodecError, match="'k1', which is not configured"):
        EncryptionCodec(parse_keys(f"k2:{K2}"), "k2").open(old)


def test_a_tampered_payload_is_refused() -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{K1}"), "k1")
    sealed = codec.seal(plain())
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 1
    with pytest.raises(CodecError, match="fails authentication"):
        codec.open(Payload(metadata=sealed.metadata, data=bytes(flipped)))
    assert codec.open(plain()) == plain(), "payloads from before encryption pass through"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("k1", "expected <id>:<base64 key>"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "AES-256 needs 32"),
    ],
)
def test_bad_keys_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_keys(spec)


def test_encryption_is_off_by_default_and_on_with_keys() -> None:
    assert data_converter(Settings.from_env({})) is DATA_CONVERTER
    on = data_converter(Settings.from_env({"LEDGERFLOW_CODEC_KEYS": f"k1:{K1}"}))
    assert isinstance(on.payload_codec, EncryptionCodec)
    assert on.failure_converter_class.__name__ == "DefaultFailureConverterWithEncodedAttributes"


@pytest.fixture
def server() -> Iterator[CodecServer]:
    codec = EncryptionCodec(parse_keys(f"k1:{K1}"), "k1")
    running = CodecServer(("127.0.0.1", 0), codec, "s3cret", ("http://127.0.0.1:8233",))
    running.start()
    yield running
    running.shutdown()
    running.server_close()


def post(
    server: CodecServer, path: str, body: object, token: str | None = "s3cret"
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        server.url + path, json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def as_json(payload: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def test_the_codec_server_decodes_for_the_token_holder_only(server: CodecServer) -> None:
    status, sealed = post(server, "/encode", {"payloads": [as_json(plain())]})
    assert status == 200
    [one] = sealed["payloads"]  # type: ignore[misc]
    assert base64.b64decode(one["metadata"]["encoding"]) == ENCODING
    status, opened = post(server, "/default/decode", {"payloads": [one]})
    assert status == 200 and opened == {"payloads": [as_json(plain())]}
    assert post(server, "/decode", {"payloads": [one]}, token=None)[0] == 401
    assert post(server, "/decode", {"payloads": [one]}, token="guess")[0] == 401
    assert post(server, "/anything", {"payloads": []})[0] == 404
    assert post(server, "/decode", {"payloads": "nope"})[0] == 400


def test_the_codec_server_answers_cors_for_the_web_ui_only(server: CodecServer) -> None:
    def preflight(origin: str) -> str | None:
        req = urllib.request.Request(server.url + "/decode", method="OPTIONS")
        req.add_header("Origin", origin)
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.headers.get("Access-Control-Allow-Origin")

    assert preflight("http://127.0.0.1:8233") == "http://127.0.0.1:8233"
    assert preflight("http://evil.example") is None


def test_the_codec_server_answers_400_to_a_length_that_is_not_a_number(
    server: CodecServer,
) -> None:
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as conn:
        conn.sendall(
            b"POST /decode HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            b"Content-Length: lots\r\n\r\n"
        )
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer


def test_idle_connections_are_bounded_and_timed_out() -> None:
    """Fifty sockets that never send a byte hold neither fifty threads nor
    their sockets for ever (issue 12, finding 13)."""
    codec = EncryptionCodec(parse_keys(f"k1:{K1}"), "k1")
    server = CodecServer(("127.0.0.1", 0), codec, "s3cret", (), socket_timeout_s=1.0,
                         max_connections=8)  # fmt: skip
    server.start()
    host, port = server.server_address[:2]
    before = threading.active_count()
    idle = [socket.create_connection((str(host), port), timeout=5) for _ in range(50)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= 8
        time.sleep(2.0)  # past the socket timeout: every idle socket was cut off
        still_open = 0
        for conn in idle:
            conn.settimeout(0.2)
            try:
                still_open += conn.recv(1) != b""
            except TimeoutError:
                still_open += 1
            except ConnectionError:
                pass
        assert still_open == 0
        # And the server still answers.
        assert post(server, "/anything", {"payloads": []})[0] == 404
    finally:
        for conn in idle:
            conn.close()
        server.shutdown()
        server.server_close()
