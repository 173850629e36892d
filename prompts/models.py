"""Prompt templates (``prompt: {id, version, variables}`` on POST /v1/responses): stored per
project, versioned; a version is never changed once written (a response names the exact text it
used), a change is a new version."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone

from tenants.models import Organization, Project


def new_prompt_id() -> str:
    # OpenAI's form: ``pmpt_`` + 48 hex characters.
    return f"pmpt_{secrets.token_hex(24)}"


class Prompt(models.Model):
    public_id = models.CharField(max_length=64, unique=True, default=new_prompt_id)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="prompts")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    name = models.CharField(max_length=200)
    latest_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class PromptVersion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    instructions = models.TextField(
        blank=True, help_text="System/developer text; {{name}} is replaced by variable 'name'."
    )
    input = models.JSONField(
        default=list,
        blank=True,
        help_text='Messages placed before the request\'s input: [{"role": "user", "content": '
        '"text with {{name}}"}, …].',
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["prompt", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "version"], name="prompt_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.prompt.public_id} v{self.version}"
