from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password

from tenants.models import ApiKey, Membership, Project
from tenants.services.api_keys import ENDPOINT_GROUPS


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200)
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        empty_label="All projects",
    )
    scope = forms.ChoiceField(choices=ApiKey.Scope.choices, initial=ApiKey.Scope.ALL)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        # Only this organization's live projects: never another organization's.
        # A ModelChoiceField; `fields` is typed with the Field base class.
        self.fields["project"].queryset = Project.objects.filter(  # type: ignore[attr-defined]
            organization=organization, archived_at__isnull=True
        ).order_by("name")
        for group in ENDPOINT_GROUPS:
            self.fields[f"perm_{group}"] = forms.ChoiceField(
                label=f"{group} (restricted keys)",
                choices=[("none", "none"), ("read", "read"), ("write", "write")],
                initial="none",
                required=False,
            )

    def permissions(self) -> dict[str, str]:
        if self.cleaned_data["scope"] != ApiKey.Scope.RESTRICTED:
            return {}
        return {
            group: self.cleaned_data.get(f"perm_{group}") or "none" for group in ENDPOINT_GROUPS
        }


class AdminKeyForm(forms.Form):
    name = forms.CharField(max_length=200)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class LimitForm(forms.Form):
    requests_per_minute = forms.IntegerField(min_value=1, required=False, label="RPM")
    tokens_per_minute = forms.IntegerField(min_value=1, required=False, label="TPM")
    max_concurrent = forms.IntegerField(min_value=1, required=False, label="Concurrency")
    monthly_token_budget = forms.IntegerField(
        min_value=1, required=False, label="Monthly token budget"
    )
    monthly_cost_budget = forms.DecimalField(
        min_value=Decimal("0.01"),
        max_digits=14,
        decimal_places=2,
        required=False,
        label="Monthly budget (USD)",
    )


class SignUpForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That user name is taken; sign in instead.")
        return username

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("password"):
            user = get_user_model()(
                username=cleaned.get("username", ""), email=cleaned.get("email", "")
            )
            validate_password(cleaned["password"], user)
        return cleaned
