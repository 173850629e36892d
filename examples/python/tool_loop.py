"""A function-calling loop, the standard OpenAI way: run the calls, send the outputs back as
function_call_output items chained with previous_response_id."""

import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ["MODEL"]

tools = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "sky": "sunny", "temperature_c": 21})


response = client.responses.create(model=model, input="What is the weather in Paris?", tools=tools)
while True:
    calls = [item for item in response.output if item.type == "function_call"]
    if not calls:
        break
    outputs = [
        {
            "type": "function_call_output",
            "call_id": call.call_id,
            "output": get_weather(**json.loads(call.arguments)),
        }
        for call in calls
    ]
    print("called:", [call.name for call in calls])
    response = client.responses.create(
        model=model, input=outputs, tools=tools, previous_response_id=response.id
    )
print(response.output_text)
