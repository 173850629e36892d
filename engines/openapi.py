"""The Models endpoints in the OpenAPI document (see :mod:`api.openapi`)."""

from __future__ import annotations

from api.openapi.components import errors, json_answer, ref

TAG = {"name": "Models", "description": "The models served to the caller's organization."}

SCHEMAS = {
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("Model")},
        },
    },
}

PATHS = {
    "/v1/models": {
        "get": {
            "operationId": "listModels",
            "tags": ["Models"],
            "summary": "List models",
            "responses": {"200": json_answer("The models.", ref("ModelList")), **errors()},
        }
    },
    "/v1/models/{model_id}": {
        "get": {
            "operationId": "retrieveModel",
            "tags": ["Models"],
            "summary": "Retrieve a model (ids may hold one slash)",
            "parameters": [
                {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": json_answer("The model.", ref("Model")), **errors()},
        }
    },
}
