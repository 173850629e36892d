from django.contrib import admin
from django.template.loader import render_to_string

from engines.health import replica_health_sync
from engines.models import Deployment, EngineReplica, ServedModel


class EngineReplicaInline(admin.TabularInline):
    model = EngineReplica
    extra = 0
    fields = ("base_url", "enabled", "created_at")
    readonly_fields = ("created_at",)


@admin.register(ServedModel)
class ServedModelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "upstream_model",
        "context_length",
        "available_to_all",
        "tool_call_parser",
        "reasoning_parser",
        "accepts_images",
        "enabled",
    )
    list_filter = ("enabled", "available_to_all")
    search_fields = ("name", "upstream_model")
    filter_horizontal = ("organizations",)
    inlines = [EngineReplicaInline]
    readonly_fields = ("replica_health",)

    @admin.display(description="Replica health (probed now)")
    def replica_health(self, obj: ServedModel) -> str:
        if obj.pk is None:
            return "—"
        return render_to_string(
            "admin/engines/replica_table.html", {"rows": replica_health_sync(model_name=obj.name)}
        )


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Azure-style deployment names per organization (``/openai/deployments/{name}/…``)."""

    list_display = ("name", "organization", "model", "created_at")
    list_filter = ("organization",)
    search_fields = ("name", "organization__name", "model__name")
    autocomplete_fields = ("organization", "model")
    readonly_fields = ("created_at",)
