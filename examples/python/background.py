"""Background mode: the response runs on a worker; poll it, or stream it and resume after a
disconnect from the last sequence_number seen (from any web process)."""

import os
import time

from openai import OpenAI

client = OpenAI()
model = os.environ["MODEL"]

# 1. Start, then poll until it is done.
response = client.responses.create(model=model, input="Write a haiku.", background=True)
print(response.id, response.status)  # queued
while response.status in ("queued", "in_progress"):
    time.sleep(0.5)
    response = client.responses.retrieve(response.id)
print(response.status, response.output_text)

# 2. Start streaming, stop reading after a few events, then resume where we left off.
stream = client.responses.create(
    model=model, input="Write another haiku.", background=True, stream=True
)
last_seen, response_id = None, None
for event in stream:
    last_seen = event.sequence_number
    if event.type == "response.created":
        response_id = event.response.id
    if last_seen >= 3:
        break
stream.close()

resumed = client.responses.retrieve(response_id, stream=True, starting_after=last_seen)
for event in resumed:
    assert event.sequence_number > last_seen
    last_seen = event.sequence_number
print("resumed up to", last_seen, event.type)
