"""The staff page of engine health (``/admin/engines/health/``): an async view, so it runs on
the web process's event loop and sees that process's replica pools."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse

from core.db import db_async
from engines.health import probe, replica_rows


@staff_member_required
async def engine_health(request):
    rows = await probe(await db_async(replica_rows)())
    context = await sync_to_async(admin.site.each_context)(request)
    context.update(title="Engine health", rows=rows)
    response = TemplateResponse(request, "admin/engines/health.html", context)
    return await sync_to_async(response.render)()
