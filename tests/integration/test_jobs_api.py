"""The native jobs API end to end on a real store and real processes."""

from __future__ import annotations

from tests.integration.conftest import Api


def test_job_that_exits_zero_succeeds_with_output(api: Api) -> None:
    job = api.submit(["sh", "-c", "echo hello from pier"], name="hello")
    assert job["status"] == "Pending"
    done = api.wait("hello")
    assert done["status"] == "Succeeded"
    assert done["exit_code"] == 0
    assert [h["status"] for h in done["history"]] == ["Pending", "Running", "Succeeded"]
    logs = api.client.get("/v1/jobs/hello/logs", headers=api.headers())
    assert logs.status_code == 200
    assert logs.text == "hello from pier\n"


def test_failing_job_without_retries_records_exit_code(api: Api) -> None:
    api.submit(["sh", "-c", "exit 3"], name="three", lifecycle={"backoff_limit": 0})
    done = api.wait("three")
    assert done["status"] == "Failed"
    assert done["exit_code"] == 3
    assert done["history"][-1]["exit_code"] == 3
