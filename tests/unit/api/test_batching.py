"""``SubmitBatcher``: submits queued in the same loop iteration share one transaction;
each gets its own answer, a refused one fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select

from pier.api.batching import SubmitBatcher
from pier.errors import Conflict, Invalid
from pier.models import JobView
from pier.services import accounts
from pier.services.context import Principal, ServiceContext
from pier.spec import JobSpec
from pier.store.db import Database
from pier.store.tables import jobs, users


def _spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"tasks": [{"command": ["true"]}], **fields})


def _admin(ctx: ServiceContext) -> Principal:
    accounts.bootstrap(ctx, "admin", "admin-password-123")
    with ctx.db.read() as conn:
        row = conn.execute(select(users).where(users.c.name == "admin")).one()
    return Principal(row.id, row.name, row.is_admin, row.default_project_id)


def test_concurrent_submits_share_one_transaction(db: Database) -> None:
    ctx = ServiceContext(db=db)
    admin = _admin(ctx)
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    batcher = SubmitBatcher(ctx)
    specs = [_spec() for _ in range(8)] + [_spec(name="same"), _spec(name="same")]

    async def burst() -> list[JobView | BaseException]:
        return await asyncio.gather(
            *(batcher.submit(admin, s) for s in specs), return_exceptions=True
        )

    outcomes = asyncio.run(burst())
    assert len(commits) == 1  # ten submits, one transaction
    views = [o for o in outcomes if isinstance(o, JobView)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(views) == 9 and len(refused) == 1
    assert refused[0].loc == ["body", "name"]
    assert len({v.name for v in views}) == 9
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 9


def test_an_invalid_spec_is_refused_before_queueing(db: Database) -> None:
    ctx = ServiceContext(db=db)
    admin = _admin(ctx)
    batcher = SubmitBatcher(ctx)
    bad = _spec(lifecycle={"completions": 5})  # more completions than replicas
    with pytest.raises(Invalid) as info:
        asyncio.run(batcher.submit(admin, bad))
    assert info.value.loc == ["body", "lifecycle", "completions"]
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
