"""The same loop with this platform's extension: POST /v1/responses/{id}/tool_outputs.

The response waiting on function calls keeps a session (pending calls, deadline) in the
database; outputs may arrive from any process, in several requests. The request that completes
the set gets the continuation: a new response chained to the first one.
"""

import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ["MODEL"]

tools = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]

response = client.responses.create(model=model, input="What is the weather in Paris?", tools=tools)
calls = [item for item in response.output if item.type == "function_call"]
print("pending:", [call.call_id for call in calls])

# Not in the SDK: call the route with the SDK's generic post (same auth, errors and retries).
continuation = client.post(
    f"/responses/{response.id}/tool_outputs",
    body={
        "tool_outputs": [
            {"call_id": call.call_id, "output": json.dumps({"sky": "sunny"})} for call in calls
        ]
    },
    cast_to=dict,
    options={"headers": {"Idempotency-Key": f"weather-{response.id}"}},
)
print(continuation["previous_response_id"] == response.id, continuation["status"])
print(continuation["output"][-1]["content"][0]["text"])
