"""A text turn with the official SDK, then a second turn chained to it."""

import os

from openai import OpenAI

client = OpenAI()  # reads OPENAI_BASE_URL (…/v1) and OPENAI_API_KEY
model = os.environ["MODEL"]

first = client.responses.create(model=model, input="Name a colour.")
print(first.id, first.status)
print(first.output_text)

# The platform stores responses (store defaults to true): chain by id, no need to resend history.
second = client.responses.create(
    model=model, input="And another one?", previous_response_id=first.id
)
print(second.output_text)
print("tokens:", second.usage.total_tokens)
