"""Streaming: the raw events, then the SDK's stream helper."""

import os

from openai import OpenAI

client = OpenAI()
model = os.environ["MODEL"]

# 1. Raw server-sent events, exactly OpenAI's names and order.
for event in client.responses.create(model=model, input="Count to three.", stream=True):
    if event.type == "response.output_text.delta":
        print(event.delta, end="", flush=True)
    elif event.type == "response.completed":
        print(f"\n[{event.type}] sequence_number={event.sequence_number}")

# 2. The helper accumulates the events and hands back the final response.
with client.responses.stream(model=model, input="Count to three again.") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
    final = stream.get_final_response()
print()
print(final.status, final.output_text)
