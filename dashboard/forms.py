"""Forms of the customer panel. They validate input; the services do the work."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from hosting.access import Access
from hosting.choices import CustomerStatus, TokenScope
from hosting.models import Customer, Image, Plan, SSHKey
from hosting.models.servers import hostname_validator
from hosting.services.errors import ServiceError
from hosting.validators import validate_name


class StyledForm(forms.Form):
    """Bootstrap classes on the widgets, and `is-invalid` on fields with errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.RadioSelect | forms.CheckboxSelectMultiple):
                continue
            css = "form-select" if isinstance(widget, forms.Select) else "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()

    def add_error(self, field, error) -> None:
        # Form validation and add_service_error both come through here.
        super().add_error(field, error)
        for name in self.errors:
            widget = self.fields[name].widget if name in self.fields else None
            if widget is not None and "is-invalid" not in widget.attrs.get("class", ""):
                widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


class CustomerChoiceMixin:
    """Adds a `customer` field when the user acts for more than one customer.

    With exactly one, the field is dropped and `customer` resolves to it.
    """

    fields: dict
    cleaned_data: dict

    def setup_customer(self, access: Access) -> None:
        self.customers = Customer.objects.visible_to(access).filter(status=CustomerStatus.ACTIVE)
        self.only_customer = None
        if len(ids := list(self.customers.values_list("pk", flat=True)[:2])) == 1:
            self.only_customer = self.customers.get(pk=ids[0])
            del self.fields["customer"]
        else:
            self.fields["customer"].queryset = self.customers

    def chosen_customer(self) -> Customer:
        return self.only_customer or self.cleaned_data["customer"]


class ServerCreateForm(CustomerChoiceMixin, StyledForm):
    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), empty_label=None)
    hostname = forms.CharField(
        max_length=253,
        validators=[hostname_validator],
        widget=forms.TextInput(attrs={"placeholder": "web-1.example.com", "autofocus": True}),
        help_text="Letters, digits and hyphens; dots between labels.",
    )
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.none(), widget=forms.RadioSelect, empty_label=None
    )
    image = forms.ModelChoiceField(queryset=Image.objects.none(), empty_label=None)
    ssh_keys = forms.ModelMultipleChoiceField(
        queryset=SSHKey.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="SSH keys",
    )

    def __init__(self, *args, access: Access, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_customer(access)
        self.fields["plan"].queryset = Plan.objects.active()
        self.fields["image"].queryset = Image.objects.active()
        self.fields["ssh_keys"].queryset = SSHKey.objects.visible_to(access).select_related(
            "customer"
        )


class SSHKeyForm(CustomerChoiceMixin, StyledForm):
    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), empty_label=None)
    name = forms.CharField(
        max_length=100,
        validators=[validate_name],
        widget=forms.TextInput(attrs={"placeholder": "laptop"}),
    )
    public_key = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAAC3Nza... you@laptop"}
        ),
        help_text="One OpenSSH public key line (ed25519, ecdsa or RSA of 1024 bits or more).",
    )

    def __init__(self, *args, access: Access, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_customer(access)


EXPIRY_CHOICES = [("", "Never"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


class TokenForm(CustomerChoiceMixin, StyledForm):
    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), empty_label=None)
    name = forms.CharField(
        max_length=100,
        required=False,
        validators=[validate_name],
        widget=forms.TextInput(attrs={"placeholder": "deploy script"}),
    )
    scope = forms.ChoiceField(
        choices=[
            (TokenScope.CUSTOMER, "Full access to this customer's servers"),
            (TokenScope.READ, "Read only"),
        ],
        initial=TokenScope.READ,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
    )
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def __init__(self, *args, access: Access, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_customer(access)

    def expires_at(self):
        days = self.cleaned_data.get("expires_in")
        return timezone.now() + timedelta(days=int(days)) if days else None


def add_service_error(form: forms.Form, exc: Exception) -> None:
    """Show a service's error on the form: on its field when the form has one."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            for field, errors in exc.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc)
        return
    if isinstance(exc, ServiceError):
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return
    form.add_error(None, str(exc))
