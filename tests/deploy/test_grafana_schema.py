"""The Grafana dashboards against Grafana's dashboard schema, since no Grafana installs here: the
typed models of Grafana's Foundation SDK (grafana-foundation-sdk on PyPI, pinned in [test];
generated from Grafana's own schemas, the dashboard kind and each panel's and data source's
options). A dashboard conforms when it decodes into the models with every key it has kept (a
key the schema does not know is dropped on the way), every value of the type the model's field
declares (an enum's among its values), and every panel type and query known to the schema."""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from core.paths import PROJECT_ROOT

DASHBOARDS = sorted(
    [
        *(PROJECT_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"),
        PROJECT_ROOT / "deploy" / "helm" / "picmetric" / "files" / "picmetric-dashboard.json",
    ]
)

plugins.register_default_plugins()  # the panels' and data sources' typed options


def _dropped(source: object, decoded: object, path: str) -> list[str]:
    """Where `source` has a key or value that the typed round trip did not keep."""
    if isinstance(source, dict):
        if not isinstance(decoded, dict):
            return [f"{path}: not an object in the schema"]
        return [
            problem
            for key, value in source.items()
            for problem in (
                [f"{path}/{key}: not in the schema"]
                if key not in decoded
                else _dropped(value, decoded[key], f"{path}/{key}")
            )
        ]
    if isinstance(source, list):
        if not isinstance(decoded, list) or len(source) != len(decoded):
            return [f"{path}: not the same list after decoding"]
        return [
            p
            for i, (a, b) in enumerate(zip(source, decoded, strict=True))
            for p in _dropped(a, b, f"{path}[{i}]")
        ]
    return [] if source == decoded else [f"{path}: {source!r} decoded as {decoded!r}"]


def _conforms(value: object, hint: Any) -> bool:
    """Whether a decoded value has the declared type (models are checked field by field)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin is typing.Union:
        return any(_conforms(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(v, args[1]) for v in value.values())
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {member.value for member in hint}
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise TypeError(f"No check for the type {hint!r}")


def _mistyped(model: object, path: str) -> list[str]:
    """Fields of a decoded model, and of the models inside it, whose value is not of their type."""
    if isinstance(model, list):
        return [p for i, item in enumerate(model) for p in _mistyped(item, f"{path}[{i}]")]
    if not hasattr(model, "to_json"):
        return []
    problems = []
    for name, hint in typing.get_type_hints(type(model)).items():
        value = getattr(model, name)
        if not _conforms(value, hint):
            problems.append(f"{path}.{name}: {value!r} is not {hint}")
        problems += _mistyped(value, f"{path}.{name}")
    return problems


def schema_problems(source: dict[str, Any]) -> list[str]:
    """Where a dashboard's JSON departs from Grafana's dashboard schema; none when it conforms."""
    problems = []
    for i, panel in enumerate(source.get("panels", [])):
        kind = panel.get("type")
        if kind != "row" and runtime.panelcfg_config(kind) is None:
            problems.append(f"/panels[{i}]: no panel type {kind!r} in the schema")
    dashboard = Dashboard.from_json(source)
    for panel in dashboard.panels or []:
        for target in getattr(panel, "targets", None) or []:
            if isinstance(target, runtime.UnknownDataquery):
                problems.append(f"panel {panel.title!r}: a query of no known data source type")
    decoded = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return problems + _dropped(source, decoded, "") + _mistyped(dashboard, "dashboard")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_the_dashboards_conform_to_grafanas_schema(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert len(dashboard["panels"]) > 10
    assert schema_problems(dashboard) == []


def _first_graph(dashboard: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in dashboard["panels"] if p["type"] == "timeseries")


# A broken panel, and where the schema check must name it.
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "misspelled unit": (lambda p: p["fieldConfig"]["defaults"].update(unitt="s"), "/unitt"),
    "misspelled query": (
        lambda p: p["targets"][0].update(exprr=p["targets"][0].pop("expr")),
        "/exprr",
    ),
    "unknown option": (lambda p: p.update(options={"legendd": {"showLegend": True}}), "/legendd"),
    "width as text": (lambda p: p["gridPos"].update(w="12"), "grid_pos.w"),
    "tooltip mode not in its enum": (
        lambda p: p.update(options={"tooltip": {"mode": "several"}}),
        "tooltip.mode",
    ),
    "unknown panel type": (lambda p: p.update(type="timeserie"), "'timeserie'"),
    "title a number": (lambda p: p.update(title=12), ".title"),
}


@pytest.mark.parametrize("breakage", BROKEN)
def test_a_broken_panel_fails_the_schema(breakage: str) -> None:
    broken = json.loads(DASHBOARDS[0].read_text())
    mutate, where = BROKEN[breakage]
    mutate(_first_graph(broken))
    problems = schema_problems(broken)
    assert any(where in problem for problem in problems), problems
