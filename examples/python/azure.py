"""The SDK against the Azure v1 form: base URL …/openai/v1 (like Azure OpenAI's v1 API, which
takes the key as a Bearer token too; curl/azure.sh shows the api-key header)."""

import os

from openai import OpenAI

root = os.environ["OPENAI_BASE_URL"].removesuffix("/v1")
client = OpenAI(base_url=f"{root}/openai/v1", api_key=os.environ["OPENAI_API_KEY"])
response = client.responses.create(model=os.environ["MODEL"], input="Say hello.")
print(response.output_text)
