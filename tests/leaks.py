"""Looking for secrets where they must not be: in clear or base64, in state files, CLI output, logs."""

from __future__ import annotations

import base64


def forms(value: str) -> dict[str, list[str]]:
    """What gives `value` away: itself and its base64; a PEM private key by any line of its body (a
    line alone is part of the key), a certificate not at all (it is public)."""
    if "CERTIFICATE-----" in value:
        return {}
    lines = [line for line in value.strip().splitlines() if "-----" not in line and len(line) >= 16]
    return {"in clear": lines or [value], "base64": [base64.b64encode(value.encode()).decode()]}


def leaks(secrets: dict[str, str], places: dict[str, str]) -> list[str]:
    """'<secret> (<form>) in <place>' for each secret (name -> value) found in a place (name -> text)."""
    return [
        f"{name} ({form}) in {place}"
        for name, value in secrets.items()
        for form, needles in forms(value).items()
        for place, text in places.items()
        if any(needle in text for needle in needles)
    ]


def secret_data(data: dict[str, str]) -> dict[str, str]:
    """A Secret's `data` (base64, as the API gives it), decoded."""
    return {key: base64.b64decode(encoded).decode() for key, encoded in data.items()}
