"""Stored responses and their event logs (for ``GET …?stream=true`` replay)."""

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
    # Background mode: what the worker needs to rebuild the generation, the lease it renews while
    # running (the sweeper fails rows whose lease ran out: the worker died), and the cancel mark
    # a worker in another process can see without a shared cache.
    background_job = models.JSONField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    stored_bytes = models.PositiveBigIntegerField(
        default=0,
        help_text="Size of the stored body and input items (counted against the organization's storage cap).",
    )
    end_reason = models.CharField(
        max_length=32,
        blank=True,
        help_text="Why a response ended early where the Response object has no word for it "
        "(client_disconnected).",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(
                fields=["status", "lease_expires_at"],
                name="response_lease_idx",
                condition=models.Q(background=True),
            ),
        ]

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


class ResponseSession(models.Model):
    """The durable state of one conversation chain between turns: which function calls the
    latest response is waiting on, what was submitted for them so far, and until when.

    Only :mod:`responses.services.sessions` changes it, by conditional updates."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        AWAITING_TOOL_OUTPUTS = "awaiting_tool_outputs"
        COMPLETED = "completed"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="response_sessions"
    )
    root_response = models.OneToOneField(
        StoredResponse, on_delete=models.CASCADE, related_name="rooted_session"
    )
    head_response = models.ForeignKey(
        StoredResponse, on_delete=models.CASCADE, related_name="headed_sessions"
    )
    status = models.CharField(max_length=24, choices=Status.choices, db_index=True)
    pending_call_ids = models.JSONField(default=list)
    submitted_outputs = models.JSONField(
        default=dict, help_text="call_id → function_call_output item, for the head response."
    )
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    continuation = models.ForeignKey(
        StoredResponse, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    token_footprint = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"session of {self.root_response_id} ({self.status})"


class ToolOutputSubmission(models.Model):
    """The first answer given to an ``Idempotency-Key`` on ``…/tool_outputs``, so that a retry
    gets it again."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    response = models.ForeignKey(StoredResponse, on_delete=models.CASCADE)
    idempotency_key = models.CharField(max_length=255)
    body_digest = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the canonical request body."
    )
    status_code = models.PositiveSmallIntegerField()
    answer = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "response", "idempotency_key"],
                name="tool_output_idempotency_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.idempotency_key} → {self.status_code}"


class CreateIdempotencyKey(models.Model):
    """The first request made with an ``Idempotency-Key`` on ``POST /v1/responses``, per
    organization, for a day: a retry with the same body gets that request's response again
    (JSON, or its events as SSE) instead of a second generation; another body is refused.

    ``response_public_id`` is set once the response exists. Stored responses are read back from
    ``StoredResponse``; a ``store: false`` one keeps its final answer (or its events) in
    ``answer``, the only copy there is."""

    class State(models.TextChoices):
        PENDING = "pending"
        """Claimed; the response is being prepared (nothing to replay yet)."""
        RUNNING = "running"
        DONE = "done"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    body_digest = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    response_public_id = models.CharField(max_length=64, blank=True)
    stored = models.BooleanField(default=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(default=200)
    answer = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key"], name="create_idempotency_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.response_public_id or self.state}"
