from django.contrib import admin

from engines.models import EngineReplica, ServedModel


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
        "enabled",
    )
    list_filter = ("enabled", "available_to_all")
    search_fields = ("name", "upstream_model")
    filter_horizontal = ("organizations",)
    inlines = [EngineReplicaInline]
