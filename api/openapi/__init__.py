"""The platform's OpenAPI 3.1 document, served at ``/openapi.json`` and rendered at ``/docs/``.

The document is assembled from one module per endpoint group (:data:`GROUP_MODULES`). Each group
module exposes ``TAG`` (``{"name", "description"}``), ``PATHS`` (path → OpenAPI path item) and
optionally ``SCHEMAS`` (component schemas). Shared pieces — the error envelope, the standard
error responses, the headers every API answer carries, the security schemes — live in
:mod:`api.openapi.components`. Adding an endpoint group is one new module and one line here.

Modules are named by import path (not imported here) so this package, which sits at the HTTP
edge, does not import the apps above it at import time.
"""

GROUP_MODULES = (
    "api.openapi.paths_service",
    "engines.openapi",
    "responses.openapi",
    "conversations.openapi",
    "api.openapi.paths_organization",
)
