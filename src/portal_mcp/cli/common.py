"""What every command shares: the consoles, the `--config` and `--user` options, loading the config, running a
command's coroutine with clear exits, and opening the portal with a progress bar.

A bad config prints one clear line and exits with code 2; any other portal error exits with code 1; no traceback
reaches the user.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.control.audit import AuditSink
from portal_mcp.downstream import ServerStatus
from portal_mcp.errors import ConfigError, PortalError
from portal_mcp.naming import plural
from portal_mcp.portal import Portal

logger = logging.getLogger("portal_mcp")
err = Console(stderr=True, soft_wrap=True)
out = Console()

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="portal.yaml or an mcpServers JSON file (default: the bundled catalog)",
)
USER_OPTION = click.option(
    "--user",
    default=None,
    help="act as this user (their policy applies, and the audit log records them); default: the config's `user:` "
    "or the OS user",
)


def fail(kind: str, exc: PortalError, code: int, *, as_log: bool) -> NoReturn:
    """One line on stderr and the exit code: a log record when logs are JSON (so a log pipeline keeps it)."""
    if as_log:
        logger.error("%s %s", kind, exc, extra={"event": "fatal"})
    else:
        err.print(f"[red]{kind}[/red] {exc}", highlight=False)
    raise SystemExit(code) from None


def config_failed(exc: ConfigError, *, as_log: bool = False) -> NoReturn:
    """Exit code 2 and one line: what every command does with a bad config."""
    fail("config error", exc, 2, as_log=as_log)


def load(path: Path | None, *, as_log: bool = False) -> PortalConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        config_failed(exc, as_log=as_log)


def run(coro_fn: Callable[[], Coroutine[Any, Any, int | None]], *, as_log: bool = False) -> None:
    try:
        code = anyio.run(coro_fn)
    except ConfigError as exc:
        config_failed(exc, as_log=as_log)
    except PortalError as exc:
        fail("error", exc, 1, as_log=as_log)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def progress_bar(*, disable: bool = False) -> Progress:
    """A transient progress bar on stderr (stdout may be the command's output)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err,
        transient=True,
        disable=disable,
    )


@asynccontextmanager
async def open_portal(
    config: PortalConfig, *, catalog_only: bool = False, table: bool = False, audit: AuditSink | None = None
) -> AsyncIterator[Portal]:
    """Open the portal with a progress bar on stderr while servers connect.

    `catalog_only`: for commands that only read the catalog (no sandbox, no audit store; see `Portal.open`);
    `table`: the command reports every server's state itself, so the pool's failure lines are left out; `audit`:
    record there, not in the config's store."""
    servers = config.enabled_servers()
    with progress_bar(disable=not servers) as progress:
        task = progress.add_task("connecting to servers", total=len(servers))

        def on_status(status: ServerStatus) -> None:
            progress.update(
                task,
                advance=1,
                description=f"connected {status.name}" if status.error is None else f"failed {status.name}",
            )

        # A server that fails to start is reported once, by the pool's log line (or, for `check`, in its table).
        with quiet_downstream() if table else contextlib.nullcontext():
            async with Portal.open(config, on_status=on_status, catalog_only=catalog_only, audit=audit) as portal:
                progress.stop()
                yield portal


@contextmanager
def quiet_downstream() -> Iterator[None]:
    """Leave the servers' failures to the command's own report (`check` shows them in its table)."""
    downstream = logging.getLogger("portal_mcp.downstream")
    level = downstream.level
    downstream.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        downstream.setLevel(level)


def write(path: Path, text: str, tools: int) -> None:
    path.write_text(text, encoding="utf-8")
    out.print(f"wrote {path} ({plural(tools, 'tool')})", highlight=False)


def as_user(config: PortalConfig, user: str | None) -> PortalConfig:
    """The config with `--user` as its local user: the portal's `local` principal is whom the command acts as."""
    return config if user is None else config.model_copy(update={"user": user})
