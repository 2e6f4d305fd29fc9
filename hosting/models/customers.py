from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from ..choices import CustomerStatus, MemberRole
from ..querysets import CustomerQuerySet, RestrictedQuerySet


class Customer(models.Model):
    """A tenant: everything a customer owns hangs off this row."""

    name = models.CharField(max_length=200)
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


SSH_KEY_TYPES = {
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


def parse_public_key(text: str) -> tuple[str, bytes, str]:
    """Split an OpenSSH public key line into (type, blob, comment), or raise ValidationError.

    The base64 blob must decode and must itself start with the same key type, as
    OpenSSH writes it; that rejects keys that were cut or pasted into the wrong field.
    """
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise ValidationError("Paste a public key like 'ssh-ed25519 AAAA... comment'.")
    key_type, b64 = parts[0], parts[1]
    comment = parts[2] if len(parts) > 2 else ""
    if key_type not in SSH_KEY_TYPES:
        raise ValidationError(f"Unsupported key type {key_type!r}.")
    try:
        blob = base64.b64decode(b64, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("The key data is not valid base64 OpenSSH key data.") from exc
    if embedded != key_type:
        raise ValidationError("The key data does not match its type.")
    if key_type == "ssh-rsa" and len(blob) < 200:
        raise ValidationError("RSA keys shorter than 1024 bits are not accepted.")
    return key_type, blob, comment


class SSHKey(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
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
