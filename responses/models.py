"""Stored responses (M6) and their event logs (for ``GET …?stream=true`` replay, L6)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.models import ApiKey, Organization, Project


class StoredResponse(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INCOMPLETE = "incomplete"

    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INCOMPLETE)

    public_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="responses"
    )
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True)
    previous_response = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="continuations"
    )
    model = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    background = models.BooleanField(default=False)
    request_id = models.CharField(max_length=128, blank=True)
    body = models.JSONField(help_text="The Response object as last built.")
    input_items = models.JSONField(
        default=list, help_text="Normalized input items of this turn, with their ids."
    )
    chain_length = models.PositiveIntegerField(
        default=1, help_text="Turns in the previous_response_id chain ending here."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def output_items(self) -> list[dict]:
        return list(self.body.get("output") or [])


class ResponseEvent(models.Model):
    """One emitted stream event, stored with its original sequence number."""

    response = models.ForeignKey(StoredResponse, on_delete=models.CASCADE, related_name="events")
    sequence_number = models.PositiveIntegerField()
    data = models.JSONField()

    class Meta:
        ordering = ["response", "sequence_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["response", "sequence_number"], name="event_sequence_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.data.get('type', 'event')} #{self.sequence_number}"
