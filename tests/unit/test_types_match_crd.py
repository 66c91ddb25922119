"""The pydantic models in quantzoo_api.types mirror the CRD's schema: same fields, enums and defaults."""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from quantzoo_api.types import TradingSystemSpec, parse_spec

CRD = Path(__file__).resolve().parents[2] / "crds" / "trading.quantzoo.io_tradingsystems.yaml"
SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _model_of(annotation: typing.Any) -> type[BaseModel] | None:
    for arg in [annotation, *typing.get_args(annotation)]:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _enum_of(annotation: typing.Any) -> type[enum.Enum] | None:
    for arg in [annotation, *typing.get_args(annotation)]:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _walk(model: type[BaseModel], schema: dict, path: str):
    props = schema.get("properties", {})
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    yield path, set(fields), set(props)
    for alias, field in fields.items():
        sub = props.get(alias, {})
        enum_type = _enum_of(field.annotation)
        if enum_type is not None:
            assert sorted(e.value for e in enum_type) == sorted(sub.get("enum", [])), f"{path}.{alias} enum"
        child = _model_of(field.annotation)
        if child is not None and not isinstance(field.annotation, types.GenericAlias):
            yield from _walk(child, sub, f"{path}.{alias}")


@pytest.mark.parametrize(
    ("path", "model_fields", "crd_fields"),
    list(_walk(TradingSystemSpec, SCHEMA["properties"]["spec"], "spec")),
)
def test_same_fields(path, model_fields, crd_fields):
    assert model_fields == crd_fields, (
        f"{path}: only in model {model_fields - crd_fields}, only in CRD {crd_fields - model_fields}"
    )


def _crd_defaults(schema: dict) -> dict:
    out = {}
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub and "default" in sub:
            out[key] = _crd_defaults(sub)
        elif "default" in sub:
            out[key] = sub["default"]
    return out


def _subset(expected: dict, actual: dict, path: str = "spec") -> None:
    for key, value in expected.items():
        if isinstance(value, dict):
            _subset(value, actual[key], f"{path}.{key}")
        else:
            assert actual[key] == value, f"{path}.{key}: CRD default {value!r}, model default {actual[key]!r}"


def test_same_defaults():
    model_defaults = parse_spec({}).model_dump(by_alias=True, mode="json", exclude_none=True)
    _subset(_crd_defaults(SCHEMA["properties"]["spec"]), model_defaults)


def test_python_refuses_what_cel_refuses():
    with pytest.raises(ValueError, match="credentialsSecret is required"):
        parse_spec({"broker": {"kind": "alpaca"}})
    with pytest.raises(ValueError, match="mode live needs a real broker"):
        parse_spec({"mode": "live"})
    with pytest.raises(ValueError, match=r"strategy\.name"):
        parse_spec({"strategy": {"name": "no spaces"}})
