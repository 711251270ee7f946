"""Structured output for ``ChatFusion``: function calling, JSON schema and JSON mode."""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

if TYPE_CHECKING:
    from .chat_models import ChatFusion

__all__ = ["StructuredMethod", "structured_output"]

StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]
_METHODS = ("function_calling", "json_schema", "json_mode")


def _is_pydantic(schema: Any) -> bool:
    return isinstance(schema, type) and is_basemodel_subclass(schema)


def _response_format(schema: Any, strict: bool | None) -> dict[str, Any]:
    json_schema = convert_to_json_schema(schema)
    spec: dict[str, Any] = {
        "name": json_schema.get("title") or "response",
        "schema": json_schema,
    }
    if json_schema.get("description"):
        spec["description"] = json_schema["description"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def structured_output(
    llm: ChatFusion,
    schema: Mapping[str, Any] | type | None,
    *,
    method: str,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[Any, Any]:
    """The runnable behind :meth:`ChatFusion.with_structured_output`."""
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(_METHODS)}")
    if schema is None and method != "json_mode":
        raise ValueError(f"method={method!r} needs a schema (a pydantic class, TypedDict or dict)")
    if isinstance(schema, Mapping):
        schema = dict(schema)
    pydantic = _is_pydantic(schema)
    trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    parser: Runnable[Any, Any]
    if method == "function_calling" and schema is not None:
        tool_name = convert_to_openai_tool(schema)["function"]["name"]
        bound = llm.bind_tools(
            [schema], tool_choice=tool_name, strict=strict, ls_structured_output_format=trace
        )
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            if pydantic
            else JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
        )
    else:
        response_format = (
            _response_format(schema, strict) if method == "json_schema" else {"type": "json_object"}
        )
        bound = llm.bind(response_format=response_format, ls_structured_output_format=trace)
        parser = (
            PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            if pydantic
            else JsonOutputParser()
        )
    if not include_raw:
        return bound | parser
    parse = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parse.with_fallbacks([no_parse], exception_key="parsing_error")
