"""Secret keys kept encrypted (AES-GCM, with a key derived from ``REPRISE_SECRET_KEY``).

Keys are looked up by their hash; the encrypted copy exists only because the official SDK
signs public tokens with the secret key itself as the HMAC secret, so verifying such a
token needs the key (:mod:`shared.projects.tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reprise_server.shared.settings import get_settings


def _cipher() -> AESGCM:
    material = b"reprise:api-key-secrets:" + get_settings().secret_key.encode()
    return AESGCM(hashlib.sha256(material).digest())


def seal_secret(secret: str) -> str:
    nonce = os.urandom(12)
    sealed = nonce + _cipher().encrypt(nonce, secret.encode(), None)
    return base64.urlsafe_b64encode(sealed).decode()


def open_secret(ciphertext: str) -> str | None:
    """The secret, or None if it was sealed under another ``REPRISE_SECRET_KEY``."""
    try:
        sealed = base64.urlsafe_b64decode(ciphertext.encode())
        return _cipher().decrypt(sealed[:12], sealed[12:], None).decode()
    except (InvalidTag, ValueError):
        return None
