"""Optional payload encryption: amounts and account ids never stored in clear
in Temporal (its histories, its database, its Web UI).

`EncryptionCodec` seals every payload with AES-256-GCM. The sealed payload
carries the id of the key that sealed it in its metadata, so keys can be
rotated: new payloads use the active key, and any configured key still opens
old ones. The nonce is random per payload (96 bits) and the payload's
encoding is bound in as associated data, so a sealed payload cannot be
passed off as another kind.

Keys come from configuration (`LEDGERFLOW_CODEC_KEYS="id:base64,..."` and
`LEDGERFLOW_CODEC_KEY_ID`); with none configured, payloads are left as they
are (the default). Operators read encrypted workflows in the Web UI through
the codec server (`ledgerflow codec-server`, ledgerflow/codec_server.py).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

if TYPE_CHECKING:
    from ledgerflow.config import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class CodecError(ValueError):
    """A payload that cannot be opened (unknown key, tampered) or a bad key."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:base64key,...` → {id: 32-byte key}."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise CodecError(f"codec key {item[:12]!r}...: expected <id>:<base64 key>")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CodecError(f"codec key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise CodecError(f"codec key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
        keys[key_id] = key
    return keys


def new_key() -> str:
    """A fresh key, base64, for `LEDGERFLOW_CODEC_KEYS`."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise CodecError(f"the active codec key {active!r} is not among the keys given")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active

    @classmethod
    def from_settings(cls, settings: Settings) -> EncryptionCodec | None:
        """The configured codec (the active key defaults to the first), or
        None when no keys are configured: encryption off."""
        if not settings.codec_keys:
            return None
        keys = parse_keys(settings.codec_keys)
        return cls(keys, settings.codec_key_id or next(iter(keys)))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._active].encrypt(nonce, payload.SerializeToString(), ENCODING)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._active.encode()},
            data=nonce + sealed,
        )

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        aead = self._keys.get(key_id)
        if aead is None:
            raise CodecError(f"payload sealed with codec key {key_id!r}, which is not configured")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            return Payload.FromString(aead.decrypt(nonce, sealed, ENCODING))
        except InvalidTag:
            raise CodecError(f"payload sealed with key {key_id!r} fails authentication") from None
