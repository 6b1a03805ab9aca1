"""``pier simulate``: replay a GPU-cluster trace through the scheduler's policies, offline.

The same replay as ``python -m pier.scheduler.simulate`` (see docs/scheduler.md and
benchmarks/scheduler/README.md); no server is involved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pier.cli.output import OutputFormat, print_error, show, table
from pier.scheduler.simulate import COLUMNS, DEFAULT_POLICIES, POLICIES, simulate

__all__ = ["simulate_trace"]


def _check_policies(values: list[str] | None) -> list[str] | None:
    for value in values or ():
        if value not in POLICIES:
            raise typer.BadParameter(
                f"unknown policy {value!r}; one of {', '.join(sorted(POLICIES))}"
            )
    return values


def simulate_trace(
    trace: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="job trace: timestamp,duration,num_gpus,...,cluster"
        ),
    ],
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy",
            help=f"{'|'.join(DEFAULT_POLICIES)}; repeat for several (default: all)",
            callback=_check_policies,
        ),
    ] = None,
    load: Annotated[
        list[float] | None,
        typer.Option("--load", min=0.01, help="divide inter-arrival times by this; repeatable"),
    ] = None,
    vcs: Annotated[
        Path | None,
        typer.Option(
            "--vcs", exists=True, dir_okay=False, help="VC table (vc,node num): each VC apart"
        ),
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", min=1, help="without --vcs: one cluster of N 8-GPU nodes"),
    ] = None,
    vc: Annotated[list[str] | None, typer.Option("--vc", help="only these VCs")] = None,
    start: Annotated[str, typer.Option(help="first submission day (ISO)")] = "2017-10-01",
    end: Annotated[str, typer.Option(help="end of the window (ISO, exclusive)")] = "2017-12-01",
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table for people, json for scripts")
    ] = OutputFormat.TABLE,
) -> None:
    """Replay a job trace through scheduling policies and print JCT, queueing, utilisation."""
    if vcs is None and nodes is None:
        raise typer.BadParameter("give a VC table (--vcs) or a cluster size (--nodes)")
    rows = simulate(
        str(trace),
        policies=policy or list(DEFAULT_POLICIES),
        loads=load or [1.0],
        vcs_path=str(vcs) if vcs is not None else None,
        nodes=nodes,
        only_vcs=vc or (),
        start=start,
        end=end,
    )
    try:
        if output is OutputFormat.JSON:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        result = table(*(title for _, title, _ in COLUMNS))
        for row in rows:
            result.add_row(*(fmt.format(row[key]) for key, _, fmt in COLUMNS))
        show(result)
    except (ValueError, KeyError, OSError) as exc:
        print_error(f"cannot replay {trace}: {exc}")
        raise typer.Exit(2) from exc
