"""The portal's error tree. Every error names what went wrong and how to fix it.

```
PortalError                       base; `str(err)` is a complete, user-facing message
├── ConfigError                   portal.yaml / mcpServers JSON is unusable (CLI exit code 2)
├── DownstreamError               a downstream server misbehaved; carries `server`
│   ├── ConnectError              could not start / reach / initialise the server
│   ├── SnapshotOnlyError         the server is a saved snapshot; its tools cannot be called
│   ├── ToolTimeoutError          a call exceeded the server's `timeout`
│   ├── ServerUnavailableError    the server is down and respawn attempts are exhausted
│   │   └── ServerDownError       failed to start or went down; retried in the background (says when)
│   ├── MissingSecretError        the calling user lacks a secret the server's `${user.KEY}` headers/env need
│   ├── ConnectionNeededError     the server uses each user's own OAuth account: the caller must connect (again)
│   └── TokenExchangeError        the caller's sign-in token cannot be exchanged for one of the server (RFC 8693)
├── ToolCallError                 a call from agent code was refused or failed; carries `tool`
│   ├── UnknownToolError          no such qualified name (carries close matches)
│   ├── ArgumentError             arguments do not match the tool's inputSchema (names the field)
│   ├── ToolFailedError           the downstream answered with `isError`; carries its message
│   └── PolicyDeniedError         the portal's policy refused the call; carries the `rule` (PermissionError in code)
├── RunError                      an execute_code run cannot be started, resumed or finished (not: the code failed)
│   ├── TooManyWaitingError       the user has too many runs waiting for approval answers already
│   ├── TooManyTasksError         the user has too many runs going as tasks already
│   ├── UnknownRunError           an approval answer or task id names no run kept here (finished, expired, elsewhere)
│   └── RunCancelledError         the run was stopped before it ended (the portal closed, the client went away)
├── LimitError                    a budget of `limits:` refused a search, run or call; carries `key` and `limit`
├── SandboxError                  the sandbox could not run the code (not: the code raised)
│   ├── WorkerStartError          no worker could be started; the message says why (often the process's stderr)
│   └── ProtocolViolation         the other end of a sandbox channel sent what the protocol does not allow
├── AuditStoreError               the audit store cannot be opened, read or written; carries `store`
├── SearchModelError              the embedding model of `search: {model: ...}` cannot be loaded; carries `model`
└── TokenRejectedError            a caller's OAuth token (or proxy assertion) was refused; carries `status`, `error`
```
"""

from __future__ import annotations

from collections.abc import Sequence


class PortalError(Exception):
    """Base of every error raised on purpose by portal-mcp."""


class ConfigError(PortalError):
    """The configuration cannot be used. `source` is the file, `line` the 1-based line when known."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        more: Sequence[ConfigError] = (),
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.more = tuple(more)
        """Further problems of the same file, each with its own line (all are shown, one per line)."""
        where = source or "config"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {message}"
        if self.more:
            text = f"{len(self.more) + 1} problems:\n{text}\n" + "\n".join(str(problem) for problem in self.more)
        super().__init__(text)

    def problems(self) -> list[ConfigError]:
        """This problem and the further ones, each on its own."""
        return [ConfigError(p.message, source=p.source, line=p.line) for p in (self, *self.more)]

    @classmethod
    def combined(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """One error listing every problem of `errors` (in line order; at least one)."""
        problems = [problem for error in errors for problem in error.problems()]
        ordered = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        first, *rest = ordered
        return cls(first.message, source=first.source, line=first.line, more=rest)


class DownstreamError(PortalError):
    """A downstream server failed; `server` is its namespace in the config. `expected`: not a fault but a state the
    server waits out (an exchange server before anyone signed in): its link logs it once, at INFO."""

    expected = False

    def __init__(self, server: str, message: str) -> None:
        self.server = server
        self.message = message
        super().__init__(f"server {server!r}: {message}")


class ConnectError(DownstreamError):
    """The server could not be started, reached or initialised."""


class SnapshotOnlyError(DownstreamError):
    """A tool of a snapshot server was called."""

    def __init__(self, server: str, tool: str, path: str) -> None:
        self.tool = tool
        self.path = path
        super().__init__(
            server,
            f"tool {tool!r} comes from the snapshot file {path!r} and cannot be called; "
            "configure the server with `command:` or `url:` to call it",
        )


class ToolTimeoutError(DownstreamError):
    """A tool call did not answer within the server's timeout (the call was cancelled downstream)."""

    def __init__(self, server: str, tool: str, timeout: float) -> None:
        self.tool = tool
        self.timeout = timeout
        super().__init__(
            server,
            f"tool {tool!r} did not answer within {timeout:g}s and was cancelled; "
            f"raise `timeout:` for server {server!r} in the config if it needs longer",
        )


class ServerUnavailableError(DownstreamError):
    """The server is down and could not be brought back."""


class ServerDownError(ServerUnavailableError):
    """The server failed to start or went down; the portal retries it in the background.

    `server 'remote' is down since 10:41:07 (it failed to start: connection refused ...); retrying in 20 s`
    """

    def __init__(
        self, server: str, reason: str, at: str | None, retry_in: float | None, then: str | None = None
    ) -> None:
        self.reason = reason
        self.at = at
        self.retry_in = retry_in
        when = f" since {at}" if at else ""
        if then is None:
            then = f"retrying in {retry_in:.0f} s" if retry_in is not None else "it is not retried (`max_restarts: 0`)"
        self.then = then
        """What happens next: when it is retried, or what tries it again."""
        self.server = server
        self.message = f"is down{when} ({reason}); {then}"
        PortalError.__init__(self, f"server {server!r} {self.message}")


class MissingSecretError(DownstreamError):
    """The server's headers/env refer to `${user.KEY}` and the calling user has no such secret (never a value)."""

    def __init__(self, server: str, user: str | None, keys: Sequence[str], *, known: bool) -> None:
        self.user = user
        self.keys = tuple(keys)
        names = ", ".join(self.keys)
        if user is None:
            message = f"calls to this server use the caller's own secrets ({names}), and this call has no user"
        else:
            example = f"{self.keys[0]}: ${{{self.keys[0]}_OF_{user.upper()}}}" if self.keys else ""
            how = (
                f"add them under `http.users.{user}.secrets` in the config (e.g. `{example}`)"
                if known
                else f"user {user!r} is not in `http.users`: add it there with `secrets: {{{example}}}` (and a `token` "
                "only if they call over HTTP)"
            )
            message = (
                f"calls to this server need the secret(s) {names} of the calling user {user!r}, who lacks them; {how}"
            )
        super().__init__(server, message)


class ConnectionNeededError(DownstreamError):
    """The server (`oauth:`) is reached with each user's own account, and `user` has not connected theirs, or its
    grant was revoked or expired (`reconnect`). `url` is where they connect in a browser, when the portal serves
    the callback (`oauth.redirect_uri`); the message never holds a token."""

    def __init__(
        self, server: str, user: str, *, url: str | None = None, reconnect: bool = False, reason: str | None = None
    ) -> None:
        self.user = user
        self.url = url
        self.reconnect = reconnect
        self.reason = reason
        state = (
            f"user {user!r}'s connection to it is no longer accepted (the grant was revoked or expired): reconnect"
            if reconnect
            else f"user {user!r} has not connected theirs yet"
        )
        if reason is not None:
            state = f"user {user!r} could not connect: {reason}"
        where = f"open {url} in a browser to connect, or " if url is not None else ""
        super().__init__(
            server,
            f"calls to this server use each user's own account, and {state}; {where}run `portal-mcp login {server} "
            f"--user {user}` on the portal's machine, then run the code again",
        )


class TokenExchangeError(DownstreamError):
    """The server (`oauth: {token_exchange: ...}`) is reached with a token its authorization server issues in exchange
    for the caller's own sign-in token, and that failed for `user`. `kind` says who can fix it: `no_token` (they did
    not sign in with the identity provider: a static token, stdio), `sign_in` (their token was refused: sign in
    again), `config` (the authorization server refused the portal's client or request: the operator), `unreachable`.
    The message never holds a token."""

    def __init__(self, server: str, user: str, kind: str, reason: str, *, expected: bool = False) -> None:
        self.user = user
        self.kind = kind
        self.reason = reason
        self.expected = expected
        fix = {
            "no_token": "call the portal with an access token from its identity provider (`auth:`) instead",
            "sign_in": "sign in to the portal again (a fresh token from the identity provider), then run the code again",
            "config": "the portal's operator must fix `oauth.token_exchange` of this server or the client at its "
            "authorization server (`portal-mcp check` shows the answer)",
            "unreachable": "try again later; `portal-mcp check` shows whether the authorization server answers",
        }[kind]
        who = f"for user {user!r}, " if user else ""
        super().__init__(
            server,
            f"calls to this server exchange each user's own sign-in for a token of the server (RFC 8693); "
            f"{who}{reason}: {fix}",
        )


class ToolCallError(PortalError):
    """A tool call made by agent code was refused or failed. `tool` is the qualified name."""

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        self.message = message
        super().__init__(message)


class UnknownToolError(ToolCallError):
    """No tool has this qualified name."""

    def __init__(self, tool: str, suggestions: Sequence[str] = ()) -> None:
        self.suggestions = tuple(suggestions)
        hint = (
            f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else "; use search_api to find tools"
        )
        super().__init__(tool, f"unknown tool {tool!r}{hint}")


class ArgumentError(ToolCallError):
    """The arguments do not satisfy the tool's inputSchema. `field` is a dotted path ('' for the top level)."""

    def __init__(self, tool: str, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        where = f"argument {field!r}" if field else "arguments"
        super().__init__(tool, f"{tool}: {where}: {problem}")


class ToolFailedError(ToolCallError):
    """The downstream server reported the call as failed (`isError`)."""

    def __init__(self, tool: str, server_message: str) -> None:
        self.server_message = server_message
        super().__init__(tool, f"{tool} failed: {server_message}")


class PolicyDeniedError(ToolCallError):
    """The portal's policy refused the call. `rule` names why, for the audit: `deny`, `allow`, `read_only`,
    `calls_per_run` or `approval:<declined|cancelled|unsupported|timeout|failed>`."""

    def __init__(self, tool: str, rule: str, reason: str) -> None:
        self.rule = rule
        super().__init__(tool, f"{tool}: not allowed: {reason}")


class RunError(PortalError):
    """An `execute_code` run cannot be started, resumed or finished; the code itself may be fine."""


class TooManyWaitingError(RunError):
    """`user` has `waiting` runs paused on approval questions, the most allowed at once."""

    def __init__(self, user: str, waiting: int) -> None:
        self.user = user
        self.waiting = waiting
        super().__init__(
            f"execute_code: {waiting} of your runs are already waiting for your approval answers; answer or let "
            "them time out (the policy's approval_timeout) before starting more"
        )


class TooManyTasksError(RunError):
    """`user` has `running` runs going as tasks, the most allowed at once."""

    def __init__(self, user: str, running: int) -> None:
        self.user = user
        self.running = running
        super().__init__(
            f"execute_code: {running} of your runs are already going as tasks, the most allowed at once; wait for "
            "one to end (tasks/result) or cancel one (tasks/cancel) before starting another"
        )


class UnknownRunError(RunError):
    """An approval answer's `requestState`, or a task id, names no run kept in this portal; the message says what
    to do."""


class RunCancelledError(RunError):
    """The run was stopped before it ended: the portal is closing, or whoever waited for it went away."""

    def __init__(self) -> None:
        super().__init__("execute_code: the run was cancelled before it ended (the portal closed); run the code again")


class LimitError(PortalError):
    """A budget refused the work: `key` is its config key (`limits.calls_in_flight`), `limit` its value."""

    def __init__(self, key: str, limit: float, message: str) -> None:
        self.key = key
        self.limit = limit
        shown = f"{int(limit)}" if float(limit).is_integer() else f"{limit:g}"
        super().__init__(f"{message} (the limit `{key}` is {shown}; an operator sets it in the portal's config)")


class SandboxError(PortalError):
    """The sandbox itself failed (could not start a worker, broken channel), not the agent's code."""


class WorkerStartError(SandboxError):
    """No sandbox worker (or fork server) could be started; the message says why, often with its stderr."""


class ProtocolViolation(SandboxError):
    """The other end of a sandbox channel (a worker, the fork server, or the host as the worker sees it) sent bytes
    or a frame the protocol does not allow; whatever it was doing is stopped."""


class AuditStoreError(PortalError):
    """The audit store cannot be opened, read or written.

    `store` names it for people: the SQLite file's path, or the PostgreSQL DSN with its password removed (the store
    redacts it before raising; a message never holds a password).
    """

    def __init__(self, store: str, message: str) -> None:
        self.store = store
        self.message = message
        super().__init__(f"audit store {store!r}: {message}")


class SearchModelError(PortalError):
    """The search's embedding model cannot be loaded. `model` is the name or path the config gave."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(
            f"search model {model!r} cannot be loaded: {reason}; give a model2vec model's folder or hub name "
            "(the machine must be online for a name), remove `search.model` for the bundled one, or set "
            "`search: {semantic: false}`"
        )


class TokenRejectedError(PortalError):
    """A caller's OAuth access token (or a trusted proxy's assertion) was refused at the portal's edge.

    `status` is the HTTP status to answer (401, 403 for missing scopes, 503 when the identity provider cannot be
    reached), `error` the RFC 6750 code (`invalid_token`, `insufficient_scope`; empty when no token was sent) and
    `reason` what was wrong, for the client and the log. Neither ever quotes the token.
    """

    def __init__(self, reason: str, *, error: str = "invalid_token", status: int = 401) -> None:
        self.reason = reason
        self.error = error
        self.status = status
        super().__init__(f"token refused: {reason}")
