"""The codec endpoints of the API: Temporal's remote codec protocol
(`POST /codec/encode`, `POST /codec/decode`, a body `{"payloads": [...]}` in
protobuf JSON, answered in the same shape), so the Temporal Web UI and the
`temporal` CLI can read sealed payloads (ledgerflow/codec.py) through the
same app, authentication and limits as the rest of the API.

Decoding shows every transfer's accounts and amounts, so it takes a token
with `read` and no account prefix (a fenced token must not read everyone's
payloads); encoding takes `write`, unfenced. CORS answers only the Web UI's
origins (the app's middleware). Bodies up to `CODEC_MAX_BODY` (a page of a
workflow's history is larger than the API's usual 64 KiB).
"""

from __future__ import annotations

from typing import Any

from ledgerflow.api.problems import CodecNotConfigured, MalformedRequest
from ledgerflow.api.routes import Call, Route
from ledgerflow.api.tokens import Forbidden

CODEC_MAX_BODY = 4 * 1024 * 1024


def _convert(operation: str) -> Any:
    async def convert(call: Call) -> Any:
        scope = "read" if operation == "decode" else "write"
        call.token.require(scope)
        if call.token.account_prefix is not None:
            raise Forbidden(f"a token fenced to {call.token.account_prefix!r} may not {operation}")
        from google.protobuf import json_format
        from temporalio.api.common.v1 import Payloads

        from ledgerflow.codec import CodecError, EncryptionCodec

        codec = EncryptionCodec.from_settings(call.settings)
        if codec is None:
            raise CodecNotConfigured("no codec keys here (LEDGERFLOW_CODEC_KEYS)")
        try:
            payloads = json_format.ParseDict(call.body, Payloads())
            change = codec.seal if operation == "encode" else codec.open
            result = Payloads(payloads=[change(p) for p in payloads.payloads])
        except (json_format.ParseError, CodecError) as exc:
            raise MalformedRequest(str(exc)) from None
        return json_format.MessageToDict(result)

    return convert


_PAYLOADS = {
    "type": "object",
    "properties": {"payloads": {"type": "array", "items": {"type": "object"}}},
}
CODEC_ROUTES: tuple[Route, ...] = tuple(
    Route("POST", f"/codec/{operation}", "read" if operation == "decode" else "write",
          f"Temporal's remote codec: {operation} payloads (for the Web UI and the CLI)",
          _convert(operation), body=_PAYLOADS, tags=("codec",), max_body=CODEC_MAX_BODY,
          cookie_ok=True)
    for operation in ("encode", "decode")
)  # fmt: skip
