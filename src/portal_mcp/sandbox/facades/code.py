"""Facades for the language itself: collections, itertools, functools, operator, copy, bisect, heapq,
contextlib, dataclasses, typing, enum, abc, types, asyncio, __future__.

These are the modules that reach `eval`, `sys` or attribute traversal when exposed whole (SANDBOX.md): each is
a subset. Left out on purpose: `typing.get_type_hints` / `ForwardRef` / `get_origin` (eval of strings; the
real `type`), `functools.singledispatch` (eval of annotations), `operator.attrgetter` / `methodcaller` as the
C versions (replaced by guarded ones), `dataclasses.make_dataclass` (builds source from strings), `enum.EnumType`
and `abc.ABCMeta` (metaclasses), the event loop and threads of `asyncio`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

from portal_mcp.sandbox.facades.common import Builder, Services, public

__all__ = ["BUILDERS", "HINTS"]


def _collections(services: Services) -> dict[str, Any]:
    return public(
        "collections", "Counter defaultdict OrderedDict deque namedtuple ChainMap UserDict UserList UserString"
    )


def _collections_abc(services: Services) -> dict[str, Any]:
    return public(
        "collections.abc",
        "Iterable Iterator Reversible Generator Sized Container Collection Callable Hashable Set MutableSet "
        "Mapping MutableMapping Sequence MutableSequence KeysView ItemsView ValuesView Awaitable Coroutine "
        "AsyncIterable AsyncIterator AsyncGenerator",
    )


def _itertools(services: Services) -> dict[str, Any]:
    itertools = importlib.import_module("itertools")
    return {name: value for name, value in vars(itertools).items() if not name.startswith("_") and callable(value)}


def _functools(services: Services) -> dict[str, Any]:
    return public(
        "functools",
        "reduce partial partialmethod lru_cache cache wraps update_wrapper cmp_to_key total_ordering "
        "cached_property WRAPPER_ASSIGNMENTS WRAPPER_UPDATES",
    )


def _operator(services: Services) -> dict[str, Any]:
    names = (
        "lt le eq ne ge gt not_ truth is_ is_not abs add and_ floordiv index inv invert lshift mod mul matmul "
        "neg or_ pos pow rshift sub truediv xor concat contains countOf indexOf getitem length_hint itemgetter "
        "iadd iand iconcat ifloordiv ilshift imod imul imatmul ior ipow irshift isub itruediv ixor"
    )
    members = public("operator", names)
    guarded = services.getattr

    def attrgetter(*names: str) -> Callable[[Any], Any]:
        """operator.attrgetter("a", "b.c"): every step goes through the sandbox's attribute guard."""
        paths = [tuple(name.split(".")) for name in names]

        def get_one(obj: Any, path: tuple[str, ...]) -> Any:
            for step in path:
                obj = guarded(obj, step)
            return obj

        def get(obj: Any) -> Any:
            values = tuple(get_one(obj, path) for path in paths)
            return values[0] if len(values) == 1 else values

        return get

    def methodcaller(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """operator.methodcaller("lower"): the method is looked up through the sandbox's attribute guard."""

        def call(obj: Any) -> Any:
            return guarded(obj, name)(*args, **kwargs)

        return call

    members.update(attrgetter=attrgetter, methodcaller=methodcaller)
    return members


def _copy(services: Services) -> dict[str, Any]:
    return public("copy", "copy deepcopy Error")


def _bisect(services: Services) -> dict[str, Any]:
    return public("bisect", "bisect bisect_left bisect_right insort insort_left insort_right")


def _heapq(services: Services) -> dict[str, Any]:
    return public("heapq", "heappush heappop heapify heapreplace heappushpop nlargest nsmallest merge")


def _contextlib(services: Services) -> dict[str, Any]:
    return public(
        "contextlib",
        "contextmanager asynccontextmanager suppress nullcontext closing aclosing ExitStack AsyncExitStack "
        "AbstractContextManager AbstractAsyncContextManager ContextDecorator",
    )


def _dataclasses(services: Services) -> dict[str, Any]:
    return public(
        "dataclasses",
        "dataclass field fields asdict astuple replace is_dataclass FrozenInstanceError InitVar KW_ONLY MISSING Field",
    )


def _typing(services: Services) -> dict[str, Any]:
    members = public(
        "typing",
        "Any Optional Union List Dict Tuple Set FrozenSet Type Callable Iterable Iterator Sequence Mapping "
        "MutableMapping MutableSequence MutableSet Collection Container Awaitable Coroutine AsyncIterable "
        "AsyncIterator AsyncGenerator Generator Literal Final ClassVar Annotated TypedDict NamedTuple TypeVar "
        "Generic Protocol runtime_checkable cast overload final NoReturn Never Self TypeAlias NotRequired "
        "Required LiteralString Hashable Sized Reversible SupportsInt SupportsFloat SupportsIndex DefaultDict "
        "OrderedDict Counter Deque ChainMap Pattern Match IO TextIO BinaryIO AnyStr Text NewType ParamSpec "
        "Concatenate TypeGuard Unpack TypeVarTuple assert_never assert_type no_type_check dataclass_transform",
    )
    members["TYPE_CHECKING"] = False
    return members


def _enum(services: Services) -> dict[str, Any]:
    return public("enum", "Enum IntEnum StrEnum Flag IntFlag auto unique member nonmember verify property")


def _abc(services: Services) -> dict[str, Any]:
    return public("abc", "ABC abstractmethod")


def _types(services: Services) -> dict[str, Any]:
    return public("types", "SimpleNamespace MappingProxyType")


def _future(services: Services) -> dict[str, Any]:
    return public("__future__", "annotations")


def _asyncio(services: Services) -> dict[str, Any]:
    members = public(
        "asyncio",
        "gather sleep wait_for wait as_completed shield timeout create_task current_task TaskGroup Task "
        "Semaphore BoundedSemaphore Lock Event Condition Barrier Queue LifoQueue PriorityQueue QueueEmpty "
        "QueueFull TimeoutError CancelledError InvalidStateError iscoroutine FIRST_COMPLETED FIRST_EXCEPTION "
        "ALL_COMPLETED",
    )

    asyncio = importlib.import_module("asyncio")

    def as_coroutine(awaitable: Any) -> Any:
        # A tool call is an awaitable, not a coroutine; tasks want coroutines.
        if asyncio.iscoroutine(awaitable) or not hasattr(type(awaitable), "__await__"):
            return awaitable

        async def awaiting() -> Any:
            return await awaitable

        return awaiting()

    def create_task(coro: Any, **kwargs: Any) -> Any:
        """asyncio.create_task: also takes a tool call (`create_task(server.tool(...))`)."""
        return asyncio.create_task(as_coroutine(coro), **kwargs)

    class TaskGroup(asyncio.TaskGroup):  # type: ignore[misc,name-defined]
        """asyncio.TaskGroup whose `create_task` also takes a tool call."""

        def create_task(self, coro: Any, **kwargs: Any) -> Any:
            return super().create_task(as_coroutine(coro), **kwargs)

    TaskGroup.__module__ = "asyncio"
    members.update(create_task=create_task, TaskGroup=TaskGroup)

    def run(main: Any, **kwargs: Any) -> Any:
        """asyncio.run: the code already runs in an event loop."""
        if hasattr(main, "close"):
            main.close()
        raise RuntimeError(
            "asyncio.run() cannot start a second event loop: the code already runs in one. At the top level, "
            "asyncio.run(main()) works as is; inside a function, write `await main()`"
        )

    members["run"] = run
    return members


BUILDERS: Final[dict[str, Builder]] = {
    "collections": _collections,
    "collections.abc": _collections_abc,
    "itertools": _itertools,
    "functools": _functools,
    "operator": _operator,
    "copy": _copy,
    "bisect": _bisect,
    "heapq": _heapq,
    "contextlib": _contextlib,
    "dataclasses": _dataclasses,
    "typing": _typing,
    "enum": _enum,
    "abc": _abc,
    "types": _types,
    "asyncio": _asyncio,
    "__future__": _future,
}

_LOOP: Final = "the event loop is not exposed; use `await`, asyncio.gather, asyncio.create_task or a TaskGroup"
HINTS: Final[dict[str, dict[str, str]]] = {
    "asyncio": {
        "get_event_loop": _LOOP,
        "get_running_loop": _LOOP,
        "new_event_loop": _LOOP,
        "run_coroutine_threadsafe": _LOOP,
        "to_thread": "there are no threads in the sandbox; call the function directly",
        "open_connection": "there is no network in the sandbox; call the tools instead",
        "create_subprocess_exec": "no processes can be started in the sandbox",
        "create_subprocess_shell": "no processes can be started in the sandbox",
    },
    "functools": {
        "singledispatch": "it evaluates annotations with eval; dispatch with isinstance checks",
        "singledispatchmethod": "it evaluates annotations with eval; dispatch with isinstance checks",
    },
    "typing": {
        "get_type_hints": "it evaluates annotations with eval; read the annotations you wrote",
        "get_origin": "not available; compare with isinstance",
        "get_args": "not available; compare with isinstance",
        "ForwardRef": "not available",
    },
    "dataclasses": {"make_dataclass": "define the class with @dataclass"},
    "enum": {"EnumMeta": "metaclasses are not available", "EnumType": "metaclasses are not available"},
    "abc": {"ABCMeta": "metaclasses are not available; subclass abc.ABC"},
    "operator": {},
    "types": {
        "FunctionType": "not available",
        "CodeType": "not available",
        "FrameType": "not available",
        "ModuleType": "not available",
    },
}
