"""What each SDK method sends (pure: :mod:`pier.sdk._calls` builds requests without I/O)."""

from __future__ import annotations

import pytest

from pier.models import ProjectUpdate
from pier.sdk import InvalidRequest
from pier.sdk import _calls as calls
from pier.spec import JobSpec, TaskRole
from pier.status import JobStatus


def test_job_refs_are_path_escaped() -> None:
    call = calls.get_job("a/b c", "vision")
    assert call.method == "GET"
    assert call.path == "/v1/jobs/a%2Fb%20c"
    assert call.params == (("project", "vision"),)


def test_empty_ref_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        calls.stop_job("", None)


def test_list_jobs_query() -> None:
    call = calls.list_jobs_page(
        project=None,
        status=["running", JobStatus.PENDING, "weird"],
        owner="ana",
        name=None,
        limit=5,
        cursor="c1",
    )
    assert call.path == "/v1/jobs"
    assert call.params == (
        ("status", "Running"),
        ("status", "Pending"),
        ("status", "weird"),
        ("owner", "ana"),
        ("limit", "5"),
        ("cursor", "c1"),
    )


def test_single_status_string() -> None:
    assert calls.status_values("FAILED") == ["Failed"]
    assert calls.status_values(None) is None


def test_logs_query() -> None:
    call = calls.logs("train", "p", follow=True, replica="main-1", attempt=None)
    assert call.path == "/v1/jobs/train/logs"
    assert call.params == (("project", "p"), ("follow", "true"), ("replica", "main-1"))


def test_submit_sends_the_spec_without_defaults() -> None:
    spec = JobSpec(tasks=[TaskRole(command=["python", "train.py"])], name="t1")
    call = calls.submit(spec)
    assert (call.method, call.path) == ("POST", "/v1/jobs")
    assert call.body == {"name": "t1", "tasks": [{"command": ["python", "train.py"]}]}


def test_submit_validates_a_mapping() -> None:
    call = calls.submit({"tasks": [{"command": ["true"], "resources": {"memory": "1Gi"}}]})
    assert call.body == {"tasks": [{"command": ["true"], "resources": {"memory": 2**30}}]}
    with pytest.raises(InvalidRequest) as caught:
        calls.submit({"tasks": [], "bogus": 1})
    assert sorted(caught.value.fields) == ["bogus", "tasks"]


def test_login_body_leaves_out_what_is_not_given() -> None:
    call = calls.login("ana", "pw", name=None, expires_in=3600)
    assert call.body == {"username": "ana", "password": "pw", "expires_in": 3600}
    with pytest.raises(InvalidRequest, match="invalid login"):
        calls.login("ana", "pw", name=None, expires_in=5)


def test_create_project_from_keywords() -> None:
    call = calls.create_project("vision", {"gpu_quota": 4, "memory_quota": "64Gi"})
    assert call.body == {
        "name": "vision",
        "gpu_quota": 4.0,
        "memory_quota": 64 * 2**30,
        "node_pools": [],
        "members": [],
    }
    with pytest.raises(InvalidRequest) as caught:
        calls.create_project("Bad Name", {})
    assert caught.value.fields == ["name"]


def test_update_project_sends_only_what_changes() -> None:
    call = calls.update_project("vision", None, {"gpu_quota": 8})
    assert (call.method, call.path, call.body) == ("PATCH", "/v1/projects/vision", {"gpu_quota": 8})
    call = calls.update_project("vision", ProjectUpdate(weight=2), {})
    assert call.body == {"weight": 2.0}
    with pytest.raises(TypeError):
        calls.update_project("vision", ProjectUpdate(weight=2), {"gpu_quota": 1})


def test_member_calls() -> None:
    add = calls.add_member("vision", "ana", "admin")
    assert (add.method, add.path, add.body) == (
        "POST",
        "/v1/projects/vision/members",
        {"user": "ana", "role": "admin"},
    )
    remove = calls.remove_member("vision", "ana")
    assert (remove.method, remove.path) == ("DELETE", "/v1/projects/vision/members/ana")
    with pytest.raises(InvalidRequest):
        calls.add_member("vision", "ana", "owner")


def test_create_user() -> None:
    call = calls.create_user("ana", {"password": "long-enough", "projects": ["vision"]})
    assert call.body == {
        "name": "ana",
        "password": "long-enough",
        "is_admin": False,
        "projects": ["vision"],
    }


def test_revoke_current_token() -> None:
    call = calls.revoke_token("current")
    assert (call.method, call.path) == ("DELETE", "/v1/tokens/current")


def test_paging_and_polling_helpers() -> None:
    assert calls.page_limit(None, 10) is None
    assert calls.page_limit(7, 5) == 2
    assert calls.page_limit(10_000, 0) == calls.PAGE_MAX
    assert calls.next_poll(0.2, 0.2) == pytest.approx(0.3)
    assert calls.next_poll(1.9, 0.2) == calls.MAX_POLL
    assert calls.next_poll(5.0, 5.0) == 5.0
    assert calls.bearer(None) == {}
    assert calls.bearer("t") == {"Authorization": "Bearer t"}


def test_stream_timeout_has_no_read_limit_when_following() -> None:
    assert calls.stream_timeout(30.0, True).read is None
    assert calls.stream_timeout(30.0, False).read == 30.0
