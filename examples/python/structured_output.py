"""Structured output: text.format with a JSON schema (vLLM's guided decoding)."""

import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ["MODEL"]

response = client.responses.create(
    model=model,
    input="Give the weather in Paris as JSON.",
    text={
        "format": {
            "type": "json_schema",
            "name": "weather",
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
                "required": ["city", "temperature_c"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    },
)
weather = json.loads(response.output_text)
print(weather["city"], weather["temperature_c"])
