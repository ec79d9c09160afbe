"""The portal's search_api text: filters by service metadata, overviews, and hints for near-miss names."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from portal_mcp.config import bundled_schemas_dir, load_config
from portal_mcp.portal import Portal


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    schemas = bundled_schemas_dir()
    config = tmp_path / "portal.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            servers:
              files:
                snapshot: {schemas / "filesystem.json"}
                description: Shared drive
                owner: platform-team
                tags: [storage, internal]
                docs: https://wiki.example.com/files
              graph:
                snapshot: {schemas / "memory.json"}
                owner: knowledge-team
                tags: [internal]
              clock:
                snapshot: {schemas / "time.json"}
            """
        )
    )
    with anyio.fail_after(30):
        async with Portal.open(load_config(config, environ={})) as opened:
            yield opened


async def test_the_overview_shows_description_owner_tags_and_docs(portal: Portal) -> None:
    text = portal.search_api("", portal.local)
    assert "- files (14 tools): Shared drive [owner: platform-team; tags: storage, internal; docs: https://wiki" in text
    assert "- clock (2 tools)" in text


async def test_owner_in_the_query_narrows_the_search_to_that_teams_servers(portal: Portal) -> None:
    text = portal.search_api("read owner:knowledge-team", portal.local)
    assert "graph." in text
    assert "files." not in text


async def test_tag_filters_combine_with_owner(portal: Portal) -> None:
    assert "files." not in portal.search_api("delete tag:internal owner:knowledge-team", portal.local)


async def test_a_filter_alone_gives_the_overview_of_matching_servers(portal: Portal) -> None:
    text = portal.search_api("tag:storage", portal.local)
    assert text.startswith("14 tools on 1 server:")
    assert "  - files.read_text_file" in text


async def test_an_unknown_owner_says_so_and_lists_servers(portal: Portal) -> None:
    assert "Unknown owner 'nobody'" in portal.search_api("x owner:nobody", portal.local)


async def test_a_near_miss_tool_name_gets_a_did_you_mean(portal: Portal) -> None:
    text = portal.search_api("clock.get_curent_time", portal.local)
    assert "did you mean clock.get_current_time" in text


async def test_an_exact_tool_name_gets_no_hint_and_ranks_first(portal: Portal) -> None:
    text = portal.search_api("clock.convert_time", portal.local, limit=1)
    assert "did you mean" not in text
    assert "# clock.convert_time" in text


async def test_searches_are_audited(portal: Portal) -> None:
    portal.search_api("time now", portal.local)
    events = [event for event in portal.audit if event.kind == "search"]  # type: ignore[attr-defined]
    assert events[-1].subject == "time now"


async def test_agents_md_lists_servers_with_owners_and_the_workflow(portal: Portal) -> None:
    from portal_mcp.surface.agents_md import render_agents_md

    text = render_agents_md(portal)
    assert "`search_api(query=...)`" in text and "`execute_code(code=...)`" in text
    assert "| `files` | 14 | platform-team | Shared drive ([docs](https://wiki.example.com/files)) |" in text
    assert "| `clock` | 2 |  |  |" in text


async def test_a_configured_sqlite_audit_file_keeps_every_search_after_the_portal_closes(tmp_path: Path) -> None:
    from portal_mcp.control.audit_store import SqliteAuditSink

    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  clock: {{snapshot: {bundled_schemas_dir() / 'time.json'}}}\naudit: {{sqlite: audit/log.sqlite}}\n"
    )
    with anyio.fail_after(30):
        async with Portal.open(load_config(config, environ={}).model_copy(update={"user": "ada"})) as portal:
            portal.search_api("current time", portal.local)
            portal.search_api("convert a time zone", portal.local)
    with SqliteAuditSink(tmp_path / "audit" / "log.sqlite") as store:
        events = store.recent(10)
    assert [(e.kind, e.user, e.subject) for e in events] == [
        ("search", "ada", "convert a time zone"),
        ("search", "ada", "current time"),
    ]


async def test_a_run_ends_with_its_outcome_while_another_process_holds_the_audit_file_and_is_recorded_after(
    tmp_path: Path,
) -> None:
    import sqlite3

    from portal_mcp.control.audit_store import SqliteAuditSink
    from portal_mcp.sandbox import RunResult

    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  clock: {{snapshot: {bundled_schemas_dir() / 'time.json'}}}\naudit: {{sqlite: audit.sqlite}}\n"
    )
    with anyio.fail_after(30):
        async with Portal.open(load_config(config, environ={}).model_copy(update={"user": "ada"})) as portal:
            holder = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # a backup, a second portal, an `sqlite3` shell left in a transaction
            try:
                outcome = await portal.execute_code("print(6 * 7)", portal.local)  # before: AuditStoreError after 5 s
            finally:
                holder.execute("ROLLBACK")
                holder.close()
    assert isinstance(outcome, RunResult) and outcome.ok and "42" in outcome.output
    with SqliteAuditSink(tmp_path / "audit.sqlite") as store:
        events = store.recent(10)
    assert [(e.kind, e.user, e.outcome) for e in events] == [("run", "ada", "ok")]


async def test_the_configured_user_is_who_stdio_searches_are_attributed_to(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text(f"user: ada\nservers:\n  clock: {{snapshot: {bundled_schemas_dir() / 'time.json'}}}\n")
    with anyio.fail_after(30):
        async with Portal.open(load_config(config, environ={})) as opened:
            opened.search_api("time", opened.local)
            opened.search_api("time", opened.principal("grace"))
    users = [event.user for event in opened.audit if event.kind == "search"]  # type: ignore[attr-defined]
    assert users == ["ada", "grace"]
