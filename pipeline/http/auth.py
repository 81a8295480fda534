"""Authorization headers. Secrets are unwrapped only here, at the moment a header is built."""

from __future__ import annotations

import base64

from pydantic import SecretStr


def basic_key_pair(public_key: SecretStr, secret_key: SecretStr) -> dict[str, str]:
    token = base64.b64encode(f"{public_key.get_secret_value()}:{secret_key.get_secret_value()}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def raw_api_key(api_key: SecretStr) -> dict[str, str]:
    return {"Authorization": api_key.get_secret_value()}


def bearer(token: SecretStr | str) -> dict[str, str]:
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return {"Authorization": f"Bearer {value}"}
