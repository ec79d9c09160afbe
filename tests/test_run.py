"""A run of agent code as the portal owns it: refused before it starts, cancelled, or cut short by the portal
closing, each with an outcome or an error of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from portal_mcp.config import PortalConfig, bundled_schemas_dir, load_config
from portal_mcp.errors import RunCancelledError
from portal_mcp.portal import Portal
from portal_mcp.runs.run import Refused

SLEEPS = "import asyncio\nawait asyncio.sleep(60)"


@pytest.fixture
def config(tmp_path: Path) -> PortalConfig:
    path = tmp_path / "portal.yaml"
    clock = bundled_schemas_dir() / "time.json"
    path.write_text(f"servers:\n  clock: {{snapshot: {clock}}}\npolicy: {{default: {{runs_per_minute: 3}}}}\n")
    return load_config(path, environ={})


@pytest.fixture
async def portal(config: PortalConfig) -> AsyncIterator[Portal]:
    with anyio.fail_after(30):
        async with Portal.open(config) as opened:
            yield opened


async def test_closing_the_portal_cancels_a_run_still_going(config: PortalConfig) -> None:
    with anyio.fail_after(30):
        async with Portal.open(config) as portal:
            run = await portal.start_run(SLEEPS, portal.local)
            await anyio.sleep(0.2)
            assert not run.done
        assert run.done
        with pytest.raises(RunCancelledError, match="the run was cancelled"):
            await run.wait()


async def test_a_cancelled_run_ends_and_the_next_one_runs(portal: Portal) -> None:
    with anyio.fail_after(30):
        run = await portal.start_run(SLEEPS, portal.local)
        run.cancel()
        with pytest.raises(RunCancelledError):
            await run.wait()
        after = await portal.execute_code("print(1 + 1)", portal.local)
    assert after.ok and after.output == "2\n"
    cancelled, event = [e for e in portal.audit if e.kind == "run"]  # type: ignore[attr-defined]
    assert (cancelled.outcome, cancelled.detail) == ("error", "cancelled")  # the audit says why it ended
    assert event.outcome == "ok"


async def test_a_precheck_refusal_is_an_outcome_of_its_own_and_starts_nothing(portal: Portal) -> None:
    run = await portal.start_run("await clock.get_curent_time(timezone='UTC')", portal.local)
    assert run.done and run.calls == 0
    with anyio.fail_after(5):
        outcome = await run.wait()
    assert isinstance(outcome, Refused) and outcome.kind == "precheck" and not outcome.ok
    assert outcome.render().startswith("Error: ") and "did you mean clock.get_current_time" in outcome.render()
    assert [problem.rule for problem in outcome.problems] == ["unknown_tool"]


async def test_a_rate_limit_refusal_is_an_outcome_of_its_own(portal: Portal) -> None:
    with anyio.fail_after(30):
        outcomes = [await portal.execute_code("1", portal.local) for _ in range(4)]
    assert [outcome.ok for outcome in outcomes] == [True, True, True, False]
    refused = outcomes[-1]
    assert isinstance(refused, Refused) and refused.kind == "rate_limit"
    assert "may start 3 runs per minute" in refused.error
    details = [(e.outcome, e.detail) for e in portal.audit if e.kind == "run"]  # type: ignore[attr-defined]
    assert details[-1] == ("refused", "rate_limit")
