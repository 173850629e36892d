"""The models the platform serves and the vLLM replicas behind each of them."""

from __future__ import annotations

from django.db import models
from django.db.models.signals import m2m_changed
from django.utils import timezone

from core.versions import VersionedQuerySet, VersionedRow, version_bump
from tenants.models import Organization

VERSION = "engines"
"""The shared version (core.versions) of the models each process caches for
``engines.selectors.model_get``: every ORM change of a model or of the organizations it is
granted to bumps it."""


class _ModelQuerySet(VersionedQuerySet):
    version_name = VERSION


class ServedModel(VersionedRow, models.Model):
    """A model as the API shows it (``GET /v1/models``) with what its engine can do."""

    version_name = VERSION

    name = models.CharField(
        max_length=128, unique=True, help_text="Public model id used in API requests."
    )
    upstream_model = models.CharField(
        max_length=256, help_text="Model name the vLLM replicas serve (--served-model-name)."
    )
    context_length = models.PositiveIntegerField(default=4096)
    owned_by = models.CharField(max_length=64, default="platform")
    available_to_all = models.BooleanField(
        default=True, help_text="Every organization may use it; otherwise only those listed."
    )
    organizations = models.ManyToManyField(Organization, blank=True, related_name="models")
    tool_call_parser = models.CharField(
        max_length=64, blank=True, help_text="vLLM --tool-call-parser; empty = no tool calling."
    )
    reasoning_parser = models.CharField(
        max_length=64, blank=True, help_text="vLLM --reasoning-parser; empty = no reasoning."
    )
    supports_structured_output = models.BooleanField(default=True)
    accepts_images = models.BooleanField(
        default=False,
        help_text="The engine takes images (a vision-language model): input_image parts and "
        "PDF pages are passed to it; otherwise they are refused with a 400.",
    )
    default_max_output_tokens = models.PositiveIntegerField(default=1024)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = _ModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name

    @property
    def supports_tools(self) -> bool:
        return bool(self.tool_call_parser)

    @property
    def supports_reasoning(self) -> bool:
        return bool(self.reasoning_parser)


def _grants_changed(sender, action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        version_bump(VERSION)


m2m_changed.connect(_grants_changed, sender=ServedModel.organizations.through)


class EngineReplica(models.Model):
    """One vLLM OpenAI-compatible server for a model (its base URL ends in ``/v1``)."""

    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="replicas")
    base_url = models.URLField(max_length=512)
    api_key = models.CharField(
        max_length=256, blank=True, help_text="Key for the vLLM server's --api-key, if any."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model__name", "base_url"]
        constraints = [
            models.UniqueConstraint(fields=["model", "base_url"], name="replica_unique_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.model.name} @ {self.base_url}"


class Deployment(models.Model):
    """An organization's Azure-style deployment: the name its clients put in
    ``/openai/deployments/{name}/…`` (or in ``model`` on the other Azure forms), and the model
    it stands for."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="deployments"
    )
    name = models.CharField(max_length=128, help_text="Deployment name used by Azure clients.")
    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="deployments")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="deployment_name_unique_in_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.model.name}"
