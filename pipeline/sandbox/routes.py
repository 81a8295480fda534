"""The shape every sandbox handler shares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.sandbox.state import SandboxState


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    state: SandboxState

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    acted: bool = False  # the request changed server state (matters for faults that lose the answer)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    family: str
    handler: Callable[[Call], Reply]
    # Whose limits a request counts against, when they are published per credential (None: the family's).
    principal: Callable[[Call], str | None] | None = None
    # How every answer of the route is shaped, the server's own (429, injected faults) included.
    shape: Callable[[Reply], Reply] | None = None


def route(method: str, path_regex: str, family: str, handler: Callable[[Call], Reply], *,
          principal: Callable[[Call], str | None] | None = None, shape: Callable[[Reply], Reply] | None = None) -> Route:
    return Route(method, re.compile(f"^{path_regex}$"), family, handler, principal, shape)


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


def guarded(check: Callable[[Call], Reply | None]) -> Callable[[Callable[[Call], Reply]], Callable[[Call], Reply]]:
    """A handler that runs only when `check` (the family's auth) has no refusal to answer with."""
    def wrap(handler: Callable[[Call], Reply]) -> Callable[[Call], Reply]:
        def guarded_handler(call: Call) -> Reply:
            return check(call) or handler(call)
        guarded_handler.__name__ = handler.__name__
        return guarded_handler
    return wrap
