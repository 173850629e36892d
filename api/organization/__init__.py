"""OpenAI's Administration API (``/v1/organization/…``) for one organization, authenticated by
its admin keys. Paths and shapes follow OpenAI's; docs/admin-api.md says where they differ."""
