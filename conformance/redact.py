"""One place that removes secrets from everything the suite writes (terminal, logs, report files).

The cloud layer registers every secret it learns (passwords, tokens, application-credential secrets) as soon
as it learns it; writers pass their text through `redact` (or use `redact_obj` for JSON-like data).
"""

from __future__ import annotations

import html
import json
import re
import threading

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()

# Shapes that are secret whatever their value: private key blocks and keystone tokens in headers.
_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"(?i)(x-(?:auth|subject)-token['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9_\-]{16,}"),
]
# Keys whose values are secret in any mapping.
SECRET_KEYS = frozenset(
    {"password", "token", "auth_token", "secret", "application_credential_secret", "private_key", "passcode"}
)


def _escaped_forms(secret: str) -> set[str]:
    """How a secret looks once HTML-, XML- or JSON-escaped (pytest-html embeds logs as escaped JSON)."""
    as_json = json.dumps(secret)[1:-1]
    return {secret, html.escape(secret), as_json, html.escape(as_json), html.escape(secret, quote=False)}


def register_secret(value: str | None) -> None:
    """Remember a secret (and its escaped forms) so every later `redact` call masks it. Short values are
    ignored (they'd mask noise)."""
    if value and len(str(value)) >= 4:
        with _lock:
            _secrets.update(form for form in _escaped_forms(str(value)) if len(form) >= 4)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _PATTERNS[0].sub(MASK, text)
    text = _PATTERNS[1].sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_obj(value):
    """Redact a JSON-like structure: secret keys are masked whole, every string is passed through `redact`."""
    if isinstance(value, dict):
        return {
            k: (MASK if str(k).lower() in SECRET_KEYS and v not in (None, "") else redact_obj(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
