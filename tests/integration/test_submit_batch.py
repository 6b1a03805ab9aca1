"""Group commit of submits (``services.submit_batch``, ``api.batching``) on a real store:
a batch commits together, a rejected submit fails alone, and over HTTP many concurrent
submits each get their own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.integration.conftest import Api

from pier.errors import Conflict, NotFound
from pier.models import JobView
from pier.services import accounts
from pier.services.context import Principal, ServiceContext
from pier.services.submit_batch import submit_batch
from pier.spec import JobSpec
from pier.store.db import Database
from pier.store.tables import history, jobs, users


def _spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"tasks": [{"command": ["true"]}], **fields})


def _admin(ctx: ServiceContext) -> Principal:
    accounts.bootstrap(ctx, "admin", "admin-password-123")
    with ctx.db.read() as conn:
        row = conn.execute(select(users).where(users.c.name == "admin")).one()
    return Principal(row.id, row.name, row.is_admin, row.default_project_id)


def _count(db: Database, table: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_batch_commits_together_and_a_rejected_submit_fails_alone(db: Database) -> None:
    ctx = ServiceContext(db=db)
    admin = _admin(ctx)
    [existing] = submit_batch(ctx, [(admin, _spec(name="taken"))])
    assert isinstance(existing, JobView)
    outcomes = submit_batch(
        ctx,
        [
            (admin, _spec()),
            (admin, _spec(name="taken")),  # taken before this batch
            (admin, _spec(name="twice")),
            (admin, _spec(name="twice")),  # taken earlier in this batch
            (admin, _spec(name="job-2")),  # a generated name of this batch, by hand
            (admin, _spec(submission_id="s-1")),
            (admin, _spec(submission_id="s-1")),
            (admin, _spec(project="no-such-project")),
            (admin, _spec()),
        ],
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "JobView",
        "Conflict",
        "JobView",
        "Conflict",
        "JobView",
        "JobView",
        "Conflict",
        "NotFound",
        "JobView",
    ]
    taken, twice, sub = outcomes[1], outcomes[3], outcomes[6]
    assert isinstance(taken, Conflict) and taken.loc == ["body", "name"]
    assert isinstance(twice, Conflict) and "twice" in str(twice)
    assert isinstance(sub, Conflict) and sub.loc == ["body", "submission_id"]
    assert isinstance(outcomes[7], NotFound) and outcomes[7].loc == ["body", "project"]
    views = [o for o in outcomes if isinstance(o, JobView)]
    names = [v.name for v in views]
    assert len(set(names)) == len(names) == 5
    assert "job-2" in names and names[0] == "job-1"  # the counter skipped the hand-taken name
    # the accepted ones are stored, each with its history entry; nothing of the others
    assert _count(db, jobs) == 6
    assert _count(db, history) == 6
    with db.read() as conn:
        stored = set(conn.execute(select(jobs.c.name)).scalars())
    assert stored == {"taken", *names}


def test_a_single_submit_takes_the_plain_path(db: Database) -> None:
    ctx = ServiceContext(db=db)
    admin = _admin(ctx)
    submit_batch(ctx, [(admin, _spec(name="once"))])
    [again] = submit_batch(ctx, [(admin, _spec(name="once"))])
    assert isinstance(again, Conflict) and again.loc == ["body", "name"]
    assert _count(db, jobs) == 1


def test_concurrent_submits_over_http_each_get_their_own_answer(api: Api) -> None:
    url = str(api.client.base_url)
    headers = api.headers()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

            async def submit(i: int) -> httpx.Response:
                body = {"name": f"b-{i % 20}", "tasks": [{"command": ["true"]}]}
                return await client.post("/v1/jobs", json=body)

            return await asyncio.gather(*(submit(i) for i in range(40)))

    responses = asyncio.run(burst())
    created = [r.json() for r in responses if r.status_code == 201]
    refused = [r.json() for r in responses if r.status_code == 409]
    assert len(created) == 20 and len(refused) == 20
    assert sorted(j["name"] for j in created) == sorted(f"b-{i}" for i in range(20))
    assert all(e["error"]["details"][0]["loc"] == ["body", "name"] for e in refused)
    for job in created:  # acknowledged means stored
        assert api.job(job["id"])["name"] == job["name"]
