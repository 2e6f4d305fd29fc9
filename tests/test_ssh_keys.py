"""SSH public keys: one line, parsed completely, at most 16 KiB (issue 7 #12)."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from hosting.models import SSHKey
from hosting.models.customers import parse_public_key

from .factories import make_public_key


def ssh_keygen(tmp_path: Path, *args: str) -> str:
    """A real key pair made by OpenSSH's ssh-keygen; returns the public key line."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    path = tmp_path / "key"
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", "me@laptop", "-f", str(path), *args], check=True
    )
    return (tmp_path / "key.pub").read_text()


def blob_of(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


ED25519 = b"ssh-ed25519"


@pytest.mark.parametrize(
    "args",
    [["-t", "ed25519"], ["-t", "rsa", "-b", "2048"], ["-t", "ecdsa"], ["-t", "ecdsa", "-b", "521"]],
    ids=["ed25519", "rsa", "ecdsa256", "ecdsa521"],
)
def test_keys_made_by_ssh_keygen_are_accepted(tmp_path, args):
    line = ssh_keygen(tmp_path, *args)
    key_type, _, comment = parse_public_key(line)
    assert line.startswith(key_type + " ") and comment == "me@laptop"


@pytest.mark.parametrize(
    "text, message",
    [
        # two keys, or a key and a second line of anything
        (make_public_key(1) + "\n" + make_public_key(2), "one line"),
        (make_public_key(1, comment="a") + "\nruncmd: [reboot]", "one line"),
        (make_public_key(1, comment="a\rb"), "one line"),
        (make_public_key(1, comment="bell\x07"), "control characters"),
        # a blob that does not decode completely into the fields of its type
        (f"ssh-ed25519 {blob_of(ED25519, bytes(32), b'extra')} x", "incomplete or has extra"),
        (f"ssh-ed25519 {blob_of(ED25519)} x", "incomplete or has extra"),
        (f"ssh-ed25519 {blob_of(ED25519, bytes(16))} x", "32 bytes"),
        (f"ssh-ed25519 {blob_of(ED25519, bytes(32))[:-8]} x", "not valid base64"),
        (f"ssh-ed25519 {blob_of(b'ssh-rsa', bytes(32))} x", "does not match its type"),
        (f"ssh-ed25519 {blob_of(ED25519, bytes(32))}!! x", "not valid base64"),
        ("ssh-dss AAAAB3NzaC1kc3M= x", "Unsupported key type"),
        ("just-some-text", "Paste a public key"),
        # at most 16 KiB
        (make_public_key(1, comment="c" * 16 * 1024), "at most 16 KiB"),
    ],
    ids=[
        "two-keys",
        "second-line",
        "carriage-return",
        "control-char",
        "trailing-field",
        "missing-field",
        "short-ed25519",
        "cut-base64",
        "type-mismatch",
        "junk-after-base64",
        "dsa",
        "no-key",
        "too-long",
    ],
)
def test_malformed_keys_are_refused(text, message):
    with pytest.raises(ValidationError) as excinfo:
        parse_public_key(text)
    assert message in " ".join(excinfo.value.messages)


@pytest.mark.django_db
def test_api_refuses_a_two_line_key(owner_client, customer):
    text = make_public_key(3) + "\n" + make_public_key(4)
    resp = owner_client.post(
        "/api/v1/ssh-keys/", {"name": "two", "public_key": text}, format="json"
    )
    assert resp.status_code == 400
    assert "public_key" in resp.json()["error"]["fields"]
    assert not SSHKey.objects.exists()
