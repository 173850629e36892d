"""Conversations (``/v1/conversations``): durable, ordered lists of items that responses created
with ``conversation`` read as their context and append their input and output to."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone

from tenants.models import Organization, Project


def new_conversation_id() -> str:
    # OpenAI's form: ``conv_`` + 48 hex characters.
    return f"conv_{secrets.token_hex(24)}"


class Conversation(models.Model):
    public_id = models.CharField(max_length=64, unique=True, default=new_conversation_id)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="conversations"
    )
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    last_position = models.BigIntegerField(
        default=0, help_text="Position of the newest item; appends take the next ones."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(
        default=timezone.now, help_text="Last change (an item added or deleted, metadata)."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "updated_at"])]

    def __str__(self) -> str:
        return self.public_id


class ConversationItem(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")
    public_id = models.CharField(max_length=128)
    position = models.BigIntegerField()
    data = models.JSONField(help_text="The item as the API returns it (with its id).")
    stored_bytes = models.PositiveBigIntegerField(
        default=0, help_text="Size of the stored item (counts toward the organization's cap)."
    )
    response_id = models.CharField(
        max_length=64, blank=True, help_text="The response that added it, if one did."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position"], name="conversation_item_position_unique"
            ),
            models.UniqueConstraint(
                fields=["conversation", "public_id"], name="conversation_item_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} @{self.position}"
