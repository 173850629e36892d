"""Waiting on a stored response in the database, for tests of background and resumed work."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from testsupport.waiting import await_until


async def wait_for_status(response_id: str, statuses: set[str], *, within: float):
    """The stored response once its status is one of ``statuses`` (polls the database)."""
    from responses.models import StoredResponse

    seen: list[str] = []

    async def settled():
        row = await sync_to_async(StoredResponse.objects.get)(public_id=response_id)
        seen.append(row.status)
        return row if row.status in statuses else None

    try:
        return await await_until(settled, within=within, every=0.05, what=response_id)
    except AssertionError:
        raise AssertionError(f"{response_id} still {seen[-1]}") from None
