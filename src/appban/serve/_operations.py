"""An endpoint's OpenAPI operation, written into its docstring from msgspec types.

``openapi`` reads each route's operation from the YAML after ``---`` in its docstring.
The osquery and webhook endpoints speak their senders' protocols, with shapes of their
own: the schemas of their bodies and answers are generated here from the types that
describe them and put inline (JSON is YAML), so the document never refers to a
component it lacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

F = TypeVar("F", bound=Callable[..., Any])


def _inline(value: Any, components: dict[str, Any]) -> Any:
    """``value`` with every ``$ref`` to a component replaced by the component itself."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and len(value) == 1:
            return _inline(components[ref.rsplit("/", 1)[-1]], components)
        return {k: _inline(v, components) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline(v, components) for v in value]
    return value


def schema(t: Any) -> dict[str, Any]:
    """The JSON Schema of ``t``, without references (the types here do not recurse)."""
    (top,), components = msgspec.json.schema_components((t,), ref_template="{name}")
    inlined: dict[str, Any] = _inline(top, components)
    return inlined


def operation(
    summary: str,
    description: str,
    *,
    body: Any,
    answers: Mapping[int, tuple[str, Any]],
    security: list[dict[str, list[str]]] | None = None,
) -> Callable[[F], F]:
    """Decorate an endpoint: its docstring's first line, then its operation as YAML."""

    def decorate(fn: F) -> F:
        op: dict[str, Any] = {
            "summary": summary,
            "description": description,
            # Agents gzip what they send (osquery with --logger_tls_compress).
            "parameters": [
                {
                    "name": "Content-Encoding",
                    "in": "header",
                    "required": False,
                    "description": "gzip when the body is gzipped; size limits apply to the decompressed body.",
                    "schema": {"type": "string", "enum": ["gzip", "x-gzip", "identity"]},
                }
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema(body)}}},
            "responses": {
                str(status): {"description": what, "content": {"application/json": {"schema": schema(t)}}}
                for status, (what, t) in answers.items()
            },
        }
        if security is not None:
            op["security"] = security
        fn.__doc__ = f"{summary}.\n\n---\n{json.dumps(op, indent=1)}\n"
        return fn

    return decorate
