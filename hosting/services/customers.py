from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from ..access import Caller
from ..choices import MemberRole
from ..models import Customer, Membership, SSHKey
from . import audit
from .errors import ServiceError


@transaction.atomic
def create_customer(
    *,
    name: str,
    email: str,
    external_ref: str = "",
    owner: dict[str, str] | None = None,
    caller: Caller,
) -> Customer:
    """Create a customer and, when `owner` is given, its first panel login (role owner)."""
    User = get_user_model()
    if external_ref and Customer.objects.filter(external_ref=external_ref).exists():
        raise ServiceError("A customer with this external reference exists.", field="external_ref")
    customer = Customer(name=name, email=email, external_ref=external_ref)
    customer.full_clean()
    customer.save()
    if owner:
        username = owner["username"]
        if User.objects.filter(username=username).exists():
            raise ServiceError(f"User name {username!r} is taken.", field="owner")
        user = User(username=username, email=owner.get("email") or email)
        try:
            validate_password(owner["password"], user)
        except ValidationError as exc:
            raise ValidationError({"owner": exc.messages}) from exc
        user.set_password(owner["password"])
        user.save()
        Membership.objects.create(user=user, customer=customer, role=MemberRole.OWNER)
    audit.record(
        action="customer.create",
        caller=caller,
        target=customer,
        details={"owner": owner["username"] if owner else None},
    )
    return customer


@transaction.atomic
def add_ssh_key(*, customer: Customer, name: str, public_key: str, caller: Caller) -> SSHKey:
    key = SSHKey(customer=customer, name=name, public_key=public_key)
    key.full_clean(exclude=["fingerprint"], validate_constraints=False)
    if SSHKey.objects.filter(customer=customer, fingerprint=key.fingerprint).exists():
        raise ValidationError({"public_key": ["This key is already saved."]})
    if SSHKey.objects.filter(customer=customer, name=name).exists():
        raise ValidationError({"name": ["A key with this name exists."]})
    key.save()
    audit.record(action="sshkey.create", caller=caller, target=key)
    return key


@transaction.atomic
def delete_ssh_key(*, key: SSHKey, caller: Caller) -> None:
    audit.record(action="sshkey.delete", caller=caller, target=key)
    key.delete()
