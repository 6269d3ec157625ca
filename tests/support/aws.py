"""AWS settings for the tests: none at all, or temporary credentials issued as the tests go."""

import json
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest


def without_aws_settings(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No credentials anywhere: no AWS_* variables, an empty home, empty shared files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home.mkdir()
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


_PRINT_FILE = "import sys; sys.stdout.write(open(sys.argv[1]).read())"


class CredentialSource:
    """The account's side of temporary credentials: issues them to the emulator and to the client's process.

    The client's ``credential_process`` (`configure`) prints the last issued document; the emulator
    (``--credentials-file``) reads the list of all issued. Both files are replaced whole, so neither reader sees half a
    document.
    """

    def __init__(self, directory: Path) -> None:
        self.issued_file = directory / "issued.json"
        self.current_file = directory / "current.json"
        self.issued: list[dict[str, Any]] = []

    def configure(self, config_file: Path) -> None:
        """Make the default profile of ``config_file`` take its credentials from this source."""
        command = f"{sys.executable} -c {json.dumps(_PRINT_FILE)} {self.current_file}"
        config_file.write_text(f"[default]\ncredential_process = {command}\n")

    def issue(self, lifetime_s: float) -> dict[str, Any]:
        document = {
            "Version": 1,
            "AccessKeyId": f"ASIANOVABRIDGE{len(self.issued) + 1:04d}",
            "SecretAccessKey": secrets.token_hex(20),
            "SessionToken": secrets.token_urlsafe(48),
            "Expiration": (datetime.now(UTC) + timedelta(seconds=lifetime_s)).isoformat(),
        }
        self.issued.append(document)
        _replace(self.issued_file, json.dumps(self.issued))
        _replace(self.current_file, json.dumps(document))
        return document

    def expiry(self, access_key_id: str) -> float:
        document = next(d for d in self.issued if d["AccessKeyId"] == access_key_id)
        return datetime.fromisoformat(document["Expiration"]).timestamp()


def _replace(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)
