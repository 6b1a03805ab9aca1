"""``pier delete [KIND] NAME``: which words name a kind, as kubectl spells them."""

from __future__ import annotations

import pytest
import typer

from pier.cli.manifests import kind_of, split_target


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("train-a", None), ("train-a", None)),
        (("job", None), ("job", None)),  # a job that happens to be named "job"
        (("job", "train-a"), ("train-a", "train")),
        (("jobs.batch", "train-a"), ("train-a", "train")),
        (("sts", "build-a"), ("build-a", "interactive")),
        (("StatefulSet", "build-a"), ("build-a", "interactive")),
        (("statefulsets.apps", "build-a"), ("build-a", "interactive")),
        (("job/train-a", None), ("train-a", "train")),
        (("sts/build-a", None), ("build-a", "interactive")),
    ],
)
def test_split_target(args: tuple[str, str | None], expected: tuple[str, str | None]) -> None:
    assert split_target(*args) == expected


@pytest.mark.parametrize("word", ["deployment", "pod", "svc", "job.apps"])
def test_other_kinds_are_usage_errors(word: str) -> None:
    with pytest.raises(typer.BadParameter, match=f"'{word}' is not a kind pier deletes"):
        kind_of(word)
