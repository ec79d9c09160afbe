"""The frame format between host and worker: length-prefixed JSON, capped before buffering."""

from __future__ import annotations

import pytest

from portal_mcp.sandbox import protocol


def test_frames_round_trip_even_when_split_across_reads() -> None:
    frames = [protocol.ready_frame(), protocol.call_frame(7, "gh.search", {"q": "é", "n": [1, 2]})]
    data = b"".join(protocol.encode_frame(frame) for frame in frames)
    decoder = protocol.FrameDecoder(1_000)
    received = [frame for i in range(len(data)) for frame in decoder.feed(data[i : i + 1])]
    assert received == frames
    assert not decoder.has_partial_frame


def test_a_pre_encoded_call_frame_decodes_like_a_built_one() -> None:
    raw = protocol.encode_call_frame(3, "gh.search", '{"q":"x"}')
    assert protocol.FrameDecoder(1_000).feed(raw) == [protocol.call_frame(3, "gh.search", {"q": "x"})]


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    decoder = protocol.FrameDecoder(100)
    with pytest.raises(protocol.ProtocolViolation, match="exceeds the limit of 100 bytes"):
        decoder.feed(protocol.HEADER.pack(2**31))


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", b'{"no_type": 1}', b'{"type": 5}', b"\xff\xfe", b'{"type": "x", "v": NaN}'],
)
def test_anything_but_a_json_object_with_a_string_type_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolViolation):
        protocol.FrameDecoder(1_000).feed(protocol.HEADER.pack(len(payload)) + payload)


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    payload = b'{"type": "x", "v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(protocol.ProtocolViolation):
        protocol.FrameDecoder(10**6).feed(protocol.HEADER.pack(len(payload)) + payload)


def test_encoding_refuses_values_that_are_not_json() -> None:
    with pytest.raises(TypeError):
        protocol.encode_frame({"type": "x", "v": {1, 2}})
    with pytest.raises(ValueError, match="JSON"):
        protocol.encode_frame({"type": "x", "v": float("nan")})


def test_a_worker_ready_frame_carries_its_layers() -> None:
    frame = protocol.ready_frame({"network": ["netns", "seccomp"], "filesystem reads": []}, ["landlock: no ABI"])
    assert protocol.parse_worker_ready(frame) == (
        {"network": ("netns", "seccomp"), "filesystem reads": ()},
        ("landlock: no ABI",),
    )


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ready", "protocol": 1},
        {"type": "ready", "protocol": 1, "layers": {}, "unavailable": []},
        {"type": "ready", "protocol": 2, "layers": {"network": "netns"}, "unavailable": []},
        {"type": "ready", "protocol": 2, "layers": {}, "unavailable": [1]},
        {"type": "ready", "protocol": 2, "layers": {"x": ["y" * 1000]}, "unavailable": []},
        {"type": "ready", "protocol": 2, "layers": {str(i): [] for i in range(100)}, "unavailable": []},
        {"type": "done", "protocol": 2, "layers": {}, "unavailable": []},
        {"type": "ready", "protocol": 2, "layers": {}, "unavailable": [], "extra": 1},
    ],
)
def test_a_malformed_worker_ready_frame_is_a_protocol_error(frame: dict[str, object]) -> None:
    with pytest.raises(protocol.ProtocolViolation):
        protocol.parse_worker_ready(frame)


def test_limits_cross_the_boundary_as_a_typed_value_and_a_wrong_shape_is_refused() -> None:
    limits = protocol.WorkerLimits(memory_mb=256, cpu_seconds=5.0, max_output_bytes=1000, max_result_bytes=2000)
    frame = protocol.fork_frame(7, limits)
    decoded = protocol.FrameDecoder(4096).feed(protocol.encode_frame(frame))[0]
    assert protocol.WorkerLimits.from_json(decoded["limits"]) == limits
    wrongs: tuple[object, ...] = (
        None,
        [],
        {**limits.to_json(), "extra": 1},
        {**limits.to_json(), "memory_mb": "256"},
        {**limits.to_json(), "cpu_seconds": 0},
        {**limits.to_json(), "language": "python"},
    )
    for wrong in wrongs:
        with pytest.raises(protocol.ProtocolViolation, match="limits must be"):
            protocol.WorkerLimits.from_json(wrong)


def test_the_sandbox_errors_are_part_of_the_portal_error_tree() -> None:
    from portal_mcp.errors import PortalError, SandboxError, WorkerStartError

    assert issubclass(protocol.ProtocolViolation, SandboxError) and issubclass(WorkerStartError, SandboxError)
    assert issubclass(SandboxError, PortalError)
