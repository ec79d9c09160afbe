"""Length-prefixed JSON frames between the sandbox host and its worker process.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one object with a
`"type"` key. JSON only, never pickle: the worker runs hostile code, so everything it sends is data to be
validated, not objects to be rebuilt. The decoder refuses a frame as soon as its header announces more than
the cap, before buffering the payload.

Conversation over the worker's channel (one connected UNIX stream socket; the worker got its limits when it
was launched, and confines itself before saying `ready`):

```
worker  ready   {protocol, layers, unavailable}   layers: {layer: [mechanism, ...]}, unavailable: [reason, ...]
host    start   {code, namespaces}
worker  output  {text}                      printed text, streamed so a killed run keeps its output
worker  call    {id, tool, args}            tool is "server.python_name", args a JSON object; or SEARCH_ACTION
                                            ("@search", never a python name), args {query, limit}: the catalog
                                            searched under the user's policy, value [{name, signature, description}]
worker  cancel  {id}                        the code stopped waiting for that call
host    result  {id, ok: true, value} | {id, ok: false, error, denied?: true}
worker  done    {ok, value, error, error_kind, output_dropped}
```

The fork server (`zygote.py`) speaks the same frames on its control socket:

```
zygote  ready   {protocol}
host    fork    {token, limits}    limits: WorkerLimits as JSON; + the worker's end of a fresh socketpair, passed with SCM_RIGHTS
zygote  forked  {token, pid}
host    kill    {pid}              SIGKILL the worker's process group (ignored once it is reaped)
zygote  exited  {pid, status}      status as in `subprocess`: the exit code, or -signal
```
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from portal_mcp.errors import ProtocolViolation

PROTOCOL_VERSION: Final = 2
HEADER: Final = struct.Struct(">I")

# Exit statuses of a worker that could not send `done`.
EXIT_OUT_OF_MEMORY: Final = 70
EXIT_HOST_GONE: Final = 71
EXIT_INTERNAL: Final = 72

SEARCH_ACTION: Final = "@search"
"""The `tool` of a call frame asking the portal to search its catalog (`portal.search` in agent code)."""

ErrorKind = Literal["exception", "syntax", "memory", "not_awaited", "internal"]
ERROR_KINDS: Final[frozenset[str]] = frozenset({"exception", "syntax", "memory", "not_awaited", "internal"})

__all__ = [
    "ERROR_KINDS",
    "EXIT_HOST_GONE",
    "EXIT_INTERNAL",
    "EXIT_OUT_OF_MEMORY",
    "HEADER",
    "PROTOCOL_VERSION",
    "SEARCH_ACTION",
    "ErrorKind",
    "FrameDecoder",
    "ProtocolViolation",
    "WorkerLimits",
    "call_frame",
    "cancel_frame",
    "done_frame",
    "encode_call_frame",
    "encode_frame",
    "error_result_frame",
    "exited_frame",
    "fork_frame",
    "forked_frame",
    "kill_frame",
    "ok_result_frame",
    "output_frame",
    "parse_worker_ready",
    "ready_frame",
    "start_frame",
]


LANGUAGE_SETTINGS: Final = ("auto", "open", "strict")


@dataclass(frozen=True)
class WorkerLimits:
    """What a worker is confined to, as the host sends it (`fork` frame, or the spawned worker's argv)."""

    memory_mb: int
    cpu_seconds: float
    max_output_bytes: int
    max_result_bytes: int
    language: str = "auto"
    """`sandbox.language`: auto, open or strict; the worker chooses the level from it and the layers in force."""

    def to_json(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_json(cls, value: object) -> WorkerLimits:
        """The limits in a frame; ProtocolViolation unless they have exactly the fields, as positive numbers."""
        names = [field.name for field in fields(cls)]
        if type(value) is not dict or sorted(value) != sorted(names):
            raise ProtocolViolation(f"limits must be an object with exactly the keys {', '.join(names)}")
        numbers = [name for name in names if name != "language"]
        if any(type(value[name]) not in (int, float) or not value[name] > 0 for name in numbers):
            raise ProtocolViolation("limits must be positive numbers")
        if value["language"] not in LANGUAGE_SETTINGS:
            raise ProtocolViolation(f"limits must be for a language of {', '.join(LANGUAGE_SETTINGS)}")
        return cls(
            memory_mb=int(value["memory_mb"]),
            cpu_seconds=float(value["cpu_seconds"]),
            max_output_bytes=int(value["max_output_bytes"]),
            max_result_bytes=int(value["max_result_bytes"]),
            language=str(value["language"]),
        )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def encode_frame(message: Mapping[str, Any], *, allow_nan: bool = False) -> bytes:
    """Encode one frame. Raises TypeError/ValueError when `message` is not plain JSON data. Text UTF-8 cannot carry
    (an unpaired surrogate, as `surrogateescape` decoding leaves for undecodable bytes) becomes "?", as it does in
    printed output: a run's report must not fail on the text of its error."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=allow_nan)
    payload = text.encode(errors="replace")
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental, sans-IO decoder: feed it bytes as they arrive, get whole frames back."""

    def __init__(self, max_frame_bytes: int, *, allow_nan: bool = False) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._allow_nan = allow_nan
        self._buffer = bytearray()

    @property
    def has_partial_frame(self) -> bool:
        """True when bytes of an unfinished frame are buffered (EOF now would cut a frame)."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return every frame now complete. Raises ProtocolViolation on malformed input."""
        self._buffer += data
        frames: list[dict[str, Any]] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self.max_frame_bytes:
                raise ProtocolViolation(f"a frame of {length} bytes exceeds the limit of {self.max_frame_bytes} bytes")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            frames.append(self._decode(payload))
        return frames

    def _decode(self, payload: bytes) -> dict[str, Any]:
        try:
            if self._allow_nan:
                message = json.loads(payload.decode())
            else:
                message = json.loads(payload.decode(), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ProtocolViolation(f"a frame is not valid UTF-8 JSON: {exc}") from None
        if type(message) is not dict or type(message.get("type")) is not str:
            raise ProtocolViolation('a frame must be a JSON object with a string "type"')
        return message


def ready_frame(layers: Mapping[str, Sequence[str]] | None = None, unavailable: Sequence[str] = ()) -> dict[str, Any]:
    """The worker is confined and waits for `start`; `layers` says which mechanisms enforce each layer.

    Without `layers` this is the fork server's ready frame.
    """
    if layers is None:
        return {"type": "ready", "protocol": PROTOCOL_VERSION}
    return {
        "type": "ready",
        "protocol": PROTOCOL_VERSION,
        "layers": {name: list(mechanisms) for name, mechanisms in layers.items()},
        "unavailable": list(unavailable),
    }


def parse_worker_ready(frame: Mapping[str, Any]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """The (layers, unavailable) of a worker's ready frame; ProtocolViolation unless it has exactly that shape."""
    layers, unavailable = frame.get("layers"), frame.get("unavailable")
    if (
        frame.keys() != {"type", "protocol", "layers", "unavailable"}
        or frame["type"] != "ready"
        or frame["protocol"] != PROTOCOL_VERSION
        or type(layers) is not dict
        or len(layers) > _MAX_LAYERS
        or type(unavailable) is not list
        or len(unavailable) > _MAX_LAYERS
        or not all(_is_short_str(reason) for reason in unavailable)
        or not all(
            _is_short_str(name)
            and type(mechanisms) is list
            and len(mechanisms) <= _MAX_LAYERS
            and all(_is_short_str(mechanism) for mechanism in mechanisms)
            for name, mechanisms in layers.items()
        )
    ):
        raise ProtocolViolation(f"expected a ready frame of protocol {PROTOCOL_VERSION}, got {frame.get('type')!r}")
    return {name: tuple(mechanisms) for name, mechanisms in layers.items()}, tuple(unavailable)


def _is_short_str(value: object) -> bool:
    return type(value) is str and len(value) <= 200


_MAX_LAYERS: Final = 16


def start_frame(code: str, namespaces: Mapping[str, list[str]]) -> dict[str, Any]:
    """The code to run and the tools per server."""
    return {"type": "start", "code": code, "namespaces": dict(namespaces)}


def fork_frame(token: int, limits: WorkerLimits) -> dict[str, Any]:
    """Ask the fork server for a worker under `limits` (sent together with the worker's channel fd)."""
    return {"type": "fork", "token": token, "limits": limits.to_json()}


def forked_frame(token: int, pid: int) -> dict[str, Any]:
    """The fork server started the worker asked for by `token`."""
    return {"type": "forked", "token": token, "pid": pid}


def kill_frame(pid: int) -> dict[str, Any]:
    """Ask the fork server to SIGKILL a worker's process group."""
    return {"type": "kill", "pid": pid}


def exited_frame(pid: int, status: int) -> dict[str, Any]:
    """A worker of the fork server was reaped; `status` is its exit code, or -signal."""
    return {"type": "exited", "pid": pid, "status": status}


def output_frame(text: str, skipped: int = 0) -> dict[str, Any]:
    """Text the code printed since the previous output frame; `skipped` bytes printed before it were cut."""
    return {"type": "output", "text": text, "skipped": skipped} if skipped else {"type": "output", "text": text}


def call_frame(call_id: int, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call; `tool` is the qualified `server.python_name`."""
    return {"type": "call", "id": call_id, "tool": tool, "args": args}


def encode_call_frame(call_id: int, tool: str, args_json: str) -> bytes:
    """A call frame around arguments already encoded (and size-checked) when the stub was called."""
    payload = f'{{"type":"call","id":{call_id},"tool":{json.dumps(tool)},"args":{args_json}}}'.encode()
    return HEADER.pack(len(payload)) + payload


def cancel_frame(call_id: int) -> dict[str, Any]:
    """The code no longer waits for call `call_id` (e.g. `asyncio.wait_for` timed out)."""
    return {"type": "cancel", "id": call_id}


def ok_result_frame(call_id: int, value: Any) -> dict[str, Any]:
    """A successful call's JSON value."""
    return {"type": "result", "id": call_id, "ok": True, "value": value}


def error_result_frame(call_id: int, error: str, *, denied: bool = False) -> dict[str, Any]:
    """A refused or failed call; `error` becomes the message of `ToolError` in the code (a `PermissionError`,
    also a `ToolError`, when the portal's policy `denied` it)."""
    frame: dict[str, Any] = {"type": "result", "id": call_id, "ok": False, "error": error}
    if denied:
        frame["denied"] = True
    return frame


def done_frame(
    *, ok: bool, value: str | None, error: str | None, error_kind: ErrorKind | None, output_dropped: int
) -> dict[str, Any]:
    """The run is over; the worker exits right after sending it."""
    return {
        "type": "done",
        "ok": ok,
        "value": value,
        "error": error,
        "error_kind": error_kind,
        "output_dropped": output_dropped,
    }
