from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from ..choices import CustomerStatus, MemberRole
from ..querysets import CustomerQuerySet, RestrictedQuerySet
from ..validators import validate_name


class Customer(models.Model):
    """A tenant: everything a customer owns hangs off this row."""

    name = models.CharField(max_length=200, validators=[validate_name])
    email = models.EmailField()
    status = models.CharField(
        max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE
    )
    external_ref = models.CharField(
        "external billing reference", max_length=100, blank=True, default=""
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="customers"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_ref"],
                condition=~models.Q(external_ref=""),
                name="customer_external_ref_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices, default=MemberRole.MEMBER)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "customer"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) of {self.customer}"


# Each key type and the number of length-prefixed fields of its blob (the type included):
# ssh-rsa e n; ssh-ed25519 key; ecdsa curve Q; sk-* adds the application string.
SSH_KEY_TYPES = {
    "ssh-rsa": 3,
    "ssh-ed25519": 2,
    "ecdsa-sha2-nistp256": 3,
    "ecdsa-sha2-nistp384": 3,
    "ecdsa-sha2-nistp521": 3,
    "sk-ssh-ed25519@openssh.com": 3,
    "sk-ecdsa-sha2-nistp256@openssh.com": 4,
}
MAX_PUBLIC_KEY_BYTES = 16 * 1024
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_COMMENT = re.compile(r"[^\x00-\x1f\x7f]*")


def _blob_fields(blob: bytes) -> list[bytes]:
    """The length-prefixed fields of an OpenSSH key blob; the whole blob must be used."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise ValueError("truncated field")
        fields.append(blob[offset : offset + length])
        offset += length
    return fields


def parse_public_key(text: str) -> tuple[str, bytes, str]:
    """Split an OpenSSH public key line into (type, blob, comment), or raise ValidationError.

    One line of at most 16 KiB: the type, a base64 blob that decodes completely into the
    fields its type has (starting with the same type, as OpenSSH writes it), and an
    optional comment without control characters. That rejects keys that were cut, pasted
    into the wrong field, or carry a second line.
    """
    if len(text.encode()) > MAX_PUBLIC_KEY_BYTES:
        raise ValidationError("A public key is at most 16 KiB.")
    text = text.strip()
    if "\n" in text or "\r" in text:
        raise ValidationError("Paste one public key, on one line.")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise ValidationError("Paste a public key like 'ssh-ed25519 AAAA... comment'.")
    key_type, b64 = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in SSH_KEY_TYPES:
        raise ValidationError(f"Unsupported key type {key_type!r}.")
    if not _COMMENT.fullmatch(comment):
        raise ValidationError("The key's comment may not contain control characters.")
    try:
        if not _BASE64.fullmatch(b64):
            raise ValueError("not base64")
        blob = base64.b64decode(b64, validate=True)
        fields = _blob_fields(blob)
        embedded = fields[0].decode("ascii") if fields else ""
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("The key data is not valid base64 OpenSSH key data.") from exc
    if embedded != key_type:
        raise ValidationError("The key data does not match its type.")
    if len(fields) != SSH_KEY_TYPES[key_type] or not all(fields[1:]):
        raise ValidationError("The key data is incomplete or has extra data.")
    if "ed25519" in key_type and len(fields[1]) != 32:
        raise ValidationError("An Ed25519 key is 32 bytes.")
    if key_type == "ssh-rsa" and len(blob) < 200:
        raise ValidationError("RSA keys shorter than 1024 bits are not accepted.")
    return key_type, blob, comment


class SSHKey(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100, validators=[validate_name])
    public_key = models.TextField()
    fingerprint = models.CharField(max_length=80, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "SSH key"
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="sshkey_name_unique"),
            models.UniqueConstraint(
                fields=["customer", "fingerprint"], name="sshkey_fingerprint_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            key_type, blob, comment = parse_public_key(self.public_key)
        except ValidationError as exc:
            raise ValidationError({"public_key": exc.messages}) from exc
        b64 = base64.b64encode(blob).decode()
        self.public_key = f"{key_type} {b64}" + (f" {comment}" if comment else "")
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        self.fingerprint = f"SHA256:{digest}"
