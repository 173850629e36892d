"""The Conversations endpoints (reference §1.2). Views only wire: parse → service → render."""

from __future__ import annotations

from api.request import ApiRequest
from api.views import AsyncApiView, json_body, json_response
from conversations import requests as parse
from conversations import selectors, services
from core.db import db_async
from responses.requests import parse_list_input_items_query

# Conversations hold what the Responses API reads and writes: the same key permission.
ENDPOINT_GROUP = "responses"


def _includes(request: ApiRequest) -> None:
    parse.parse_includes(request.GET.getlist("include[]") + request.GET.getlist("include"))


class ConversationCreateApi(AsyncApiView):
    endpoint_group = ENDPOINT_GROUP
    http_method_names = ["post"]

    async def post(self, request: ApiRequest):
        body = parse.parse_conversation_create(json_body(request))
        conversation = await db_async(services.conversation_create)(
            principal=request.principal, metadata=body.metadata, items=body.items
        )
        return json_response(selectors.conversation_object(conversation))


class ConversationDetailApi(AsyncApiView):
    endpoint_group = ENDPOINT_GROUP
    http_method_names = ["get", "post", "delete"]

    async def get(self, request: ApiRequest, conversation_id: str):
        conversation = await db_async(selectors.conversation_get)(
            organization=request.principal.organization, conversation_id=conversation_id
        )
        return json_response(selectors.conversation_object(conversation))

    async def post(self, request: ApiRequest, conversation_id: str):
        metadata = parse.parse_conversation_update(json_body(request))
        conversation = await db_async(selectors.conversation_get)(
            organization=request.principal.organization, conversation_id=conversation_id
        )
        conversation = await db_async(services.conversation_update)(
            conversation=conversation, metadata=metadata
        )
        return json_response(selectors.conversation_object(conversation))

    async def delete(self, request: ApiRequest, conversation_id: str):
        conversation = await db_async(selectors.conversation_get)(
            organization=request.principal.organization, conversation_id=conversation_id
        )
        await db_async(services.conversation_delete)(conversation=conversation)
        return json_response(
            {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        )


class ConversationItemsApi(AsyncApiView):
    endpoint_group = ENDPOINT_GROUP
    http_method_names = ["get", "post"]

    async def get(self, request: ApiRequest, conversation_id: str):
        query = parse_list_input_items_query({key: request.GET.getlist(key) for key in request.GET})
        conversation = await db_async(selectors.conversation_get)(
            organization=request.principal.organization, conversation_id=conversation_id
        )
        page = await db_async(selectors.conversation_items_page)(
            conversation=conversation, after=query.after, limit=query.limit, order=query.order
        )
        return json_response(page)

    async def post(self, request: ApiRequest, conversation_id: str):
        _includes(request)
        items = parse.parse_items_create(json_body(request))
        conversation = await db_async(selectors.conversation_get)(
            organization=request.principal.organization, conversation_id=conversation_id
        )
        added = await db_async(services.conversation_items_add)(
            conversation=conversation, items=items
        )
        return json_response(
            {
                "object": "list",
                "data": added,
                "first_id": added[0]["id"],
                "last_id": added[-1]["id"],
                "has_more": False,
            }
        )


class ConversationItemDetailApi(AsyncApiView):
    endpoint_group = ENDPOINT_GROUP
    http_method_names = ["get", "delete"]

    async def get(self, request: ApiRequest, conversation_id: str, item_id: str):
        _includes(request)
        item = await db_async(_item)(request, conversation_id, item_id)
        return json_response(item.data)

    async def delete(self, request: ApiRequest, conversation_id: str, item_id: str):
        item = await db_async(_item)(request, conversation_id, item_id)
        await db_async(services.conversation_item_delete)(conversation=item.conversation, item=item)
        return json_response(selectors.conversation_object(item.conversation))


def _item(request: ApiRequest, conversation_id: str, item_id: str):
    conversation = selectors.conversation_get(
        organization=request.principal.organization, conversation_id=conversation_id
    )
    item = selectors.conversation_item_get(conversation=conversation, item_id=item_id)
    item.conversation = conversation
    return item
