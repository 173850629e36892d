"""Image and file inputs through the whole stack to a fake vLLM replica: what reaches the engine
for a model that accepts images, the 400s for a text-only model, size limits, and image URLs
that point into a private network."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest
from django.test import AsyncClient

from engines.models import EngineReplica, ServedModel
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture

pytestmark = pytest.mark.django_db(transaction=True)

# A 1×1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PUBLIC_URL = "https://93.184.216.34/cat.png"  # an address literal: no DNS in the test


def _pdf(text: str) -> bytes:
    """A minimal one-page PDF whose page shows ``text`` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


upstream = fake_vllm_fixture(behavior=FakeBehavior(text="A cat."))


@pytest.fixture
def models(transactional_cast, upstream) -> dict[str, str]:
    names = {}
    for kind, accepts in (("vision", True), ("text", False)):
        model = ServedModel.objects.create(
            name=f"{kind}-{upstream.port}", upstream_model=f"up-{kind}", accepts_images=accepts
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return names


async def _ask(persona, model: str, *parts: dict):
    body = {"model": model, "input": [{"role": "user", "content": list(parts)}]}
    return await AsyncClient().post(
        "/v1/responses", json.dumps(body), content_type="application/json", headers=persona.headers
    )


def _sent(upstream) -> list[dict]:
    return upstream.chat_requests()[-1].body["messages"]


async def test_images_reach_a_vision_model_as_chat_image_parts(
    transactional_cast, models, upstream
):
    answer = await _ask(
        transactional_cast.alice,
        models["vision"],
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG_URL},
        {"type": "input_image", "image_url": PUBLIC_URL, "detail": "low"},
    )
    assert answer.status_code == 200, answer.content
    assert _sent(upstream) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG_URL}},
                {"type": "image_url", "image_url": {"url": PUBLIC_URL}},
            ],
        }
    ]
    items = await AsyncClient().get(
        f"/v1/responses/{answer.json()['id']}/input_items", headers=transactional_cast.alice.headers
    )
    assert items.json()["data"][0]["content"][1] == {
        "type": "input_image",
        "image_url": PNG_URL,
        "detail": "auto",
    }


async def test_a_text_only_model_refuses_images_naming_the_part(
    transactional_cast, models, upstream
):
    before = len(upstream.chat_requests())
    answer = await _ask(
        transactional_cast.alice,
        models["text"],
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG_URL},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "input[0].content[1]" and "text-only" in error["message"]
    assert len(upstream.chat_requests()) == before


async def test_text_and_pdf_files_reach_any_model_as_text(transactional_cast, models, upstream):
    notes = base64.b64encode(b"Grocery list: eggs, milk.").decode()
    pdf = base64.b64encode(_pdf("Quarterly revenue grew 12 percent.")).decode()
    answer = await _ask(
        transactional_cast.alice,
        models["text"],
        {"type": "input_text", "text": "Summarize."},
        {"type": "input_file", "filename": "notes.txt", "file_data": notes},
        {
            "type": "input_file",
            "filename": "q3.pdf",
            "file_data": f"data:application/pdf;base64,{pdf}",
        },
    )
    assert answer.status_code == 200, answer.content
    content = _sent(upstream)[0]["content"]
    assert content[0] == {"type": "text", "text": "Summarize."}
    assert content[1] == {"type": "text", "text": "[File: notes.txt]\nGrocery list: eggs, milk."}
    assert content[2]["text"].startswith("[File: q3.pdf]\n")
    assert "Quarterly revenue grew 12 percent." in content[2]["text"]


@pytest.mark.parametrize(
    ("part", "param", "fragment"),
    [
        (
            {"type": "input_image", "image_url": "http://127.0.0.1:8000/admin"},
            "image_url",
            "private",
        ),
        ({"type": "input_image", "image_url": "http://10.1.2.3/x.png"}, "image_url", "private"),
        (
            {"type": "input_image", "image_url": "http://169.254.169.254/latest/meta-data"},
            "image_url",
            "private",
        ),
        ({"type": "input_image", "image_url": "http://[::1]/x.png"}, "image_url", "private"),
        (
            {"type": "input_image", "image_url": "http://[::ffff:192.168.0.1]/x"},
            "image_url",
            "private",
        ),
        ({"type": "input_image", "image_url": "http://localhost/x.png"}, "image_url", "private"),
        (
            {"type": "input_image", "image_url": "https://vault.internal/x.png"},
            "image_url",
            "private",
        ),
        ({"type": "input_image", "image_url": "http://printer/x.png"}, "image_url", "private"),
        ({"type": "input_image", "image_url": "file:///etc/passwd"}, "image_url", "http(s) URL"),
        (
            {"type": "input_image", "image_url": "data:text/html;base64,PGI+"},
            "image_url",
            "images must be",
        ),
        ({"type": "input_image", "image_url": "data:image/png;base64,@@@"}, "image_url", "base64"),
        ({"type": "input_image", "file_id": "file-1"}, "file_id", "Files API"),
        ({"type": "input_file", "file_id": "file-1", "filename": "a"}, "file_id", "Files API"),
        ({"type": "input_file", "file_url": "https://x.example/a.pdf"}, "file_url", "fetches no"),
        (
            {
                "type": "input_file",
                "filename": "a.bin",
                "file_data": base64.b64encode(b"\xff\xfe\x00").decode(),
            },
            "file_data",
            "neither a PDF",
        ),
        (
            {
                "type": "input_file",
                "filename": "a.pdf",
                "file_data": base64.b64encode(b"%PDF-1.4 junk").decode(),
            },
            "file_data",
            "PDF",
        ),
        ({"type": "input_file", "file_data": "aGk="}, "filename", "filename"),
    ],
)
async def test_bad_media_parts_are_400s_naming_them(
    transactional_cast, models, part, param, fragment
):
    answer = await _ask(transactional_cast.alice, models["vision"], part)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["param"] == f"input[0].content[0].{param}", error
    assert fragment in error["message"]


async def test_size_limits(transactional_cast, models, settings):
    settings.INPUT_IMAGE_MAX_BYTES = 1024
    settings.INPUT_FILE_MAX_BYTES = 1024
    big = base64.b64encode(b"x" * 2000).decode()
    image = await _ask(
        transactional_cast.alice,
        models["vision"],
        {"type": "input_image", "image_url": "data:image/png;base64," + big},
    )
    text = await _ask(
        transactional_cast.alice,
        models["vision"],
        {"type": "input_file", "filename": "big.txt", "file_data": big},
    )
    for answer in (image, text):
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "string_above_max_length"


async def test_a_hostname_that_resolves_into_a_private_network_is_refused(
    transactional_cast, models, monkeypatch
):
    async def resolve(self, host, port, *args, **kwargs):
        address = "10.0.0.7" if host == "images.example.com" else "93.184.216.34"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", resolve)
    inside = await _ask(
        transactional_cast.alice,
        models["vision"],
        {"type": "input_image", "image_url": "https://images.example.com/cat.png"},
    )
    assert inside.status_code == 400
    assert inside.json()["error"]["param"] == "input[0].content[0].image_url"
    outside = await _ask(
        transactional_cast.alice,
        models["vision"],
        {"type": "input_image", "image_url": "https://cdn.example.org/cat.png"},
    )
    assert outside.status_code == 200, outside.content
