"""Drive a running platform with the official openai SDK (run by hand against `make run`).

    .venv/bin/python scripts/sdk_smoke.py --base-url http://127.0.0.1:8000/v1 --key sk-rp-… \
        [--model smollm2-135m-instruct]

Covers what the Responses issues promise a client: a text turn, a streamed turn, a tool round trip
(previous_response_id + function_call_output, then tool_outputs), retrieve, input_items, delete,
and a background response polled, resumed mid-stream and cancelled. Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import openai
from openai.types.responses import FunctionToolParam

TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}


def step(name: str) -> None:
    print(f"--- {name}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=300)
    model = args.model

    step("models")
    print([m.id for m in client.models.list()])

    step("text turn")
    text = client.responses.create(
        model=model, input="Say hello in five words.", max_output_tokens=32
    )
    print(text.status, repr(text.output_text))

    step("streamed turn: responses.stream().get_final_response()")
    with client.responses.stream(
        model=model,
        input="Answer with one word: is the sky blue?",
        max_output_tokens=400,
        temperature=0,
    ) as stream:
        final = stream.get_final_response()
    print(final.status, repr(final.output_text))

    step("tool round trip via previous_response_id")
    first = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    call = next(item for item in first.output if item.type == "function_call")
    print("call", call.name, call.arguments)
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[TOOL],
        max_output_tokens=64,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
    )
    print(second.status, repr(second.output_text))

    step("tool loop via POST /v1/responses/{id}/tool_outputs")
    third = client.responses.create(
        model=model,
        input="What is the weather in Oslo?",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    call = next(item for item in third.output if item.type == "function_call")
    continued: Any = client.post(
        f"/responses/{third.id}/tool_outputs",
        body={"tool_outputs": [{"call_id": call.call_id, "output": "snow, -3C"}]},
        cast_to=object,
    )
    print("continuation", continued["status"], continued["previous_response_id"] == third.id)

    step("retrieve, input_items, delete")
    print(client.responses.retrieve(second.id).status)
    print([item.type for item in client.responses.input_items.list(second.id)])
    client.responses.delete(first.id)
    try:
        client.responses.retrieve(first.id)
        print("ERROR: deleted response still retrievable")
        return 1
    except openai.NotFoundError:
        print("deleted: 404")

    step("background: poll, resume the stream after a disconnect")
    queued = client.responses.create(
        model=model,
        input="Write a haiku about the sea.",
        background=True,
        max_output_tokens=64,
    )
    print("created", queued.status)
    seen = []
    with client.responses.retrieve(queued.id, stream=True) as events:
        for event in events:
            seen.append(event.sequence_number)
            if len(seen) == 5:
                break  # disconnect
    resumed = [
        e.sequence_number
        for e in client.responses.retrieve(queued.id, stream=True, starting_after=seen[-1])
    ]
    contiguous = resumed == list(range(seen[-1] + 1, seen[-1] + 1 + len(resumed)))
    print("resumed after", seen[-1], "contiguous:", contiguous)
    while (polled := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        time.sleep(0.5)
    print("final", polled.status, repr(polled.output_text))

    step("background: cancel")
    long = client.responses.create(
        model=model,
        input="Write a very long story about a lighthouse.",
        background=True,
        max_output_tokens=1500,
    )
    time.sleep(3)
    cancelled = client.responses.cancel(long.id)
    print("cancelled", cancelled.status)
    return 0 if contiguous and cancelled.status == "cancelled" else 1


if __name__ == "__main__":
    sys.exit(main())
