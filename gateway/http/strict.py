"""What a /v1 request says that the gateway does not know is refused, naming it and what is
accepted there: a misspelled option never runs silently at its default (`?blur_face=true` would
answer the faces unblurred). The seed's /api keeps ignoring what it does not know."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from gateway.errors import InvalidRequest


def unknown(
    names: Iterable[str],
    accepted: list[str],
    kind: str = "field",
    hint: str = "",
    query: Iterable[str] = (),
) -> None:
    """InvalidRequest naming the first of `names` that is not `accepted` (and the likely one
    meant); `kind` says what they are ("field", "query parameter"), `hint` where else to look,
    `query` the route's query parameters (one sent as a field is told so)."""
    for name in names:
        if name in accepted:
            continue
        if name in query:
            raise InvalidRequest(
                f"'{name}' is a query parameter (?{name}=...), not a {kind} of the body."
            )
        close = difflib.get_close_matches(name, accepted, n=1)
        meant = f" (did you mean '{close[0]}'?)" if close else ""
        takes = (
            f"the accepted {kind}s are {', '.join(accepted)}"
            if accepted
            else f"this route takes no {kind}s"
        )
        raise InvalidRequest(f"Unknown {kind} '{name[:40]}'{meant}; {takes}.{hint}")


def unknown_keys(
    data: Mapping[str, Any], schema: type[BaseModel], query: Iterable[str] = (), at: str = ""
) -> None:
    """`unknown` over a JSON object and the objects nested in it that `schema` forbids extra
    keys in (a job's `source`), each named by its path (`source.prefix`)."""
    if schema.model_config.get("extra") != "forbid":
        return
    names = [f"{at}{key}" for key in data]
    unknown(names, [f"{at}{name}" for name in schema.model_fields], query=query)
    for name, field in schema.model_fields.items():
        nested, value = field.annotation, data.get(name)
        if isinstance(nested, type) and issubclass(nested, BaseModel) and isinstance(value, dict):
            unknown_keys(value, nested, at=f"{at}{name}.")


# Each route's query parameters, by the route's id (routes are not hashable; each kept here, so
# its id is never another's).
_QUERY: dict[int, tuple[APIRoute, list[str]]] = {}


def _query_parameters(route: APIRoute) -> list[str]:
    """The route's query parameters and those of its dependencies, the router's included."""
    known = _QUERY.get(id(route))
    if known is not None:
        return known[1]
    names: list[str] = []
    waiting: list[Dependant] = [route.dependant]
    while waiting:
        dependant = waiting.pop()
        names.extend(p.alias for p in dependant.query_params if p.alias not in names)
        waiting.extend(dependant.dependencies)
    _QUERY[id(route)] = (route, names)
    return names


def query_parameters(request: Request) -> list[str]:
    """The query parameters the request's route declares (none outside a FastAPI route)."""
    route = request.scope.get("route")
    return _query_parameters(route) if isinstance(route, APIRoute) else []


def known_query(request: Request) -> None:
    """A router's dependency: every query parameter is one its route declares."""
    hint = ""
    if request.method == "POST":
        hint = " The analysis options (models, threshold, ...) go in the JSON body or the form."
    unknown(request.query_params.keys(), query_parameters(request), "query parameter", hint)
