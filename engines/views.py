from __future__ import annotations

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.request import ApiDrfRequest
from engines.selectors import model_get, model_list, model_not_found


class ModelOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="name")
    object = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()
    owned_by = serializers.CharField()

    def get_object(self, model) -> str:
        return "model"

    def get_created(self, model) -> int:
        return int(model.created_at.timestamp())


class ModelListApi(APIView):
    endpoint_group = "models"

    def get(self, request: ApiDrfRequest):
        models = model_list(organization=request.principal.organization)
        return Response({"object": "list", "data": ModelOutputSerializer(models, many=True).data})


class ModelRetrieveApi(APIView):
    endpoint_group = "models"

    def get(self, request: ApiDrfRequest, model_id: str):
        model = model_get(organization=request.principal.organization, name=model_id)
        if model is None:
            raise model_not_found(model_id)
        return Response(ModelOutputSerializer(model).data)
