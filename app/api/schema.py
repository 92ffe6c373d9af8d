"""One description of the API: pydantic models validate every request and write openapi.json.

A view declares its operation once with :func:`operation`: the path, query and body
models it takes, the responses it gives and the problems it may answer. The decorator
registers the Flask route, checks the API key, validates the parameters and the body with
those models (a 400 or a 422 problem naming each bad member by JSON pointer) and records
the operation; :func:`document` builds the OpenAPI 3.1 document from the same records.

Why pydantic v2 with this thin glue rather than spectree or flask-openapi3: both answer
validation errors in their own shape and route layout, while the contract (DESIGN.md)
fixes the paths and the RFC 9457 problem shape (``errors: [{pointer, detail}]``); the glue
is small, and pydantic's ``model_json_schema`` gives the JSON Schema 2020-12 that OpenAPI
3.1 embeds as is.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from flask import Blueprint, Flask, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import models_json_schema

from app.api.auth import require_api_key
from app.api.errors import ApiProblem

# Integers the databases hold (BIGINT); every integer field and parameter is bounded.
MAX_INT = 2**63 - 1


def _integral(value):
    """JSON Schema's ``integer`` includes 7.0: take a float without a fraction as an int."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
        return int(value)
    return value


def bounded(low: int, high: int = MAX_INT):
    """An integer from ``low`` to ``high``, documented with both bounds."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_integral)]


PositiveInt = bounded(1)

# Values that depend on the running app (its locales, its catalogue): a model marks the
# field with :func:`catalogue`; the app checks the value, and :func:`resolve` writes the
# current list into the document.
CATALOGUE = "x-prefcenter-catalogue"


def catalogue(name: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", CATALOGUE: name})


def resolve(node, values: dict[str, list]):
    """``node`` (a document or part of one) with each catalogue mark replaced by the
    values it stands for now."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    name = node.get(CATALOGUE)
    if name is not None:
        known = values[name]
        return {"type": "string", "enum": list(known)} if known else {"not": {}}
    return {key: resolve(value, values) for key, value in node.items()}


class Input(BaseModel):
    """A request body: strict JSON types, unknown members refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Query(BaseModel):
    """Query or path parameters: strings from the URL, converted; unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Output(BaseModel):
    """A response body, for the document (views answer plain dicts)."""

    model_config = ConfigDict(extra="forbid")


PROBLEM_TEXTS = {
    400: "Malformed request: bad JSON, or a bad path or query parameter",
    401: "Missing, wrong or revoked API key (ESP intake: the provider's proof fails)",
    404: "Not found",
    409: "Conflict with the stored state",
    413: "Body or batch too large",
    405: "Method not allowed on this path",
    406: "Not acceptable (ESP intake: a Mailgun token seen before; Mailgun does not retry)",
    415: "Body is not application/json",
    422: "Well-formed JSON that breaks a rule; `errors` points at each member",
    429: "Rate limited; see Retry-After",
}


@dataclass
class Response:
    """One documented answer: a model (JSON), a raw schema, or nothing (204)."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: dict | None = None
    models: tuple[type[BaseModel], ...] = ()  # what ``schema`` refers to


@dataclass
class Operation:
    endpoint: str
    method: str
    operation_id: str
    summary: str
    responses: dict[int, Response]
    problems: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    body_schema: dict | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    public: bool = False
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    models: tuple[type[BaseModel], ...] = ()  # what ``body_schema`` refers to
    max_body: int | None = None
    raw_body: dict | None = None  # a body the view reads itself: documented only


OPERATIONS: list[Operation] = []


def operation(bp: Blueprint, rule: str, method: str, *, operation_id: str, summary: str,
              responses: dict[int, Response], problems: Iterable[int] = (),
              body: type[BaseModel] | None = None, body_required: bool = True,
              body_schema: dict | None = None, query: type[BaseModel] | None = None,
              path: type[BaseModel] | None = None, public: bool = False,
              description: str | None = None, tags: Iterable[str] = (),
              models: Iterable[type[BaseModel]] = (), max_body: int | None = None,
              raw_body: dict | None = None) -> Callable:
    """Route ``method rule`` on ``bp`` to the view, validated and documented.

    The view receives ``body=`` (a ``body`` model instance, or the raw JSON value when only
    ``body_schema`` is given), ``query=`` and ``path=`` model instances (with a ``path``
    model, instead of the route's raw arguments).
    """

    def decorator(view: Callable) -> Callable:
        op = Operation(
            endpoint=f"{bp.name}.{view.__name__}", method=method.lower(),
            operation_id=operation_id, summary=summary, responses=responses,
            problems=tuple(problems), body=body, body_required=body_required,
            body_schema=body_schema, query=query, path=path, public=public,
            description=description, tags=list(tags), models=tuple(models),
            max_body=max_body, raw_body=raw_body)
        OPERATIONS.append(op)

        @functools.wraps(view)
        def validated(**kwargs):
            if path is not None:  # the view takes the validated model, not the raw strings
                kwargs = {"path": parameters(path, kwargs, "path")}
            if query is not None:
                kwargs["query"] = parameters(query, request.args.to_dict(), "query")
            if body is not None or body_schema is not None:
                if max_body is not None:
                    request.max_content_length = max_body
                kwargs["body"] = json_body(body, required=body_required)
            return view(**kwargs)

        handler = validated if public else require_api_key(validated)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handler,
                        methods=[method.upper()])
        return view

    return decorator


# --- requests --------------------------------------------------------------------------


def pointer_token(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def pointer(loc: Iterable) -> str:
    return "".join(f"/{pointer_token(part)}" for part in loc)


def _type_name(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                          "a value")


_EXPECTED = {
    "bool_type": "a boolean", "string_type": "a string", "int_type": "an integer",
    "float_type": "a number", "dict_type": "an object", "model_type": "an object",
    "model_attributes_type": "an object", "list_type": "an array",
    "datetime_type": "an ISO 8601 date-time", "int_from_float": "an integer",
}


def error_detail(error: dict, model: type[BaseModel] | None) -> str:
    """A precise sentence for one pydantic error."""
    loc = error["loc"]
    name = ".".join(str(part) for part in loc) or "body"
    kind = error["type"]
    if kind == "missing":
        return f"{name} is required."
    if kind == "extra_forbidden":
        return f"Unknown member {loc[-1]!r}."
    if kind == "bool_type":
        return f"{name} must be a boolean (true or false), not {_type_name(error.get('input'))}."
    if kind in _EXPECTED:
        return f"{name} must be {_EXPECTED[kind]}, not {_type_name(error.get('input'))}."
    if kind == "literal_error":
        return (f"{name} must be one of {error['ctx']['expected']}; "
                f"got {error.get('input')!r}.")
    ctx = error.get("ctx") or {}
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"{name} must hold at least {'one item' if least == 1 else f'{least} items'}."
    if kind == "too_long":
        return (f"{name} must hold at most {ctx.get('max_length')} items; "
                f"got {ctx.get('actual_length')}.")
    if kind == "string_too_short":
        return f"{name} must be at least {ctx.get('min_length')} characters long."
    if kind == "string_too_long":
        return f"{name} must be at most {ctx.get('max_length')} characters long."
    if kind.startswith("datetime_"):
        return f"{name} must be an ISO 8601 date-time; got {error.get('input')!r}."
    message = error["msg"].removeprefix("Value error, ")
    return f"{name}: {message[0].lower()}{message[1:]}" if message else name


def problem_from(exc: ValidationError, *, status: int = 422, model=None,
                 prefix: tuple = ()) -> ApiProblem:
    errors = [{"pointer": pointer((*prefix, *e["loc"])), "detail": error_detail(e, model)}
              for e in exc.errors(include_url=False)]
    title = "Unprocessable Content" if status == 422 else "Bad Request"
    more = f" ({len(errors) - 1} more in errors)" if len(errors) > 1 else ""
    return ApiProblem(status, title, errors[0]["detail"] + more, errors=errors)


def parameters(model: type[BaseModel], values: dict, where: str):
    """Path or query parameters as a model; a 400 problem naming each bad one."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problem = problem_from(exc, status=400, model=model)
        for error in problem.extra["errors"]:
            error["parameter"] = f"{where}:{error['pointer'].lstrip('/')}"
        raise problem from exc


def json_body(model: type[BaseModel] | None, *, required: bool = True):
    """The body validated by ``model``: 415 not JSON, 400 malformed, 422 breaks the schema."""
    raw = request.get_data(cache=True)
    if not raw and not required:
        return model.model_validate({}) if model is not None else None
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiProblem(415, "Unsupported Media Type",
                         "Send the body as JSON with Content-Type: application/json "
                         f"(got {mimetype or 'no Content-Type'}).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiProblem(400, "Bad Request", f"The body is not UTF-8: {exc}.") from exc
    if model is None:
        return _parse_json(text)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        malformed = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
        if malformed:
            raise ApiProblem(400, "Bad Request", "The body is not valid JSON: "
                             f"{malformed[0]['ctx']['error']}.") from exc
        raise problem_from(exc, model=model) from exc


def _parse_json(text: str):
    from pydantic_core import from_json

    try:
        return from_json(text)
    except ValueError as exc:
        raise ApiProblem(400, "Bad Request", f"The body is not valid JSON: {exc}.") from exc


def validate_body(model: type[BaseModel], value: Any):
    """A parsed JSON value validated by ``model`` (strict, as JSON); a 422 problem if not."""
    try:
        return model.model_validate(value, strict=True)
    except ValidationError as exc:
        raise problem_from(exc, model=model) from exc


def validate_item(model: type[BaseModel], value: Any, prefix: tuple = ()):
    """One item (a CSV or NDJSON row) validated by itself: ``(instance, None)`` or
    ``(None, errors)``."""
    try:  # as JSON (strict): the rules a request body meets, dates as ISO 8601 strings
        return model.model_validate_json(json.dumps(value)), None
    except ValidationError as exc:
        return None, problem_from(exc, model=model, prefix=prefix).extra["errors"]


# --- the document ----------------------------------------------------------------------

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _problem(status: int) -> dict:
    answer = {"description": PROBLEM_TEXTS[status],
              "content": {"application/problem+json": {
                  "schema": {"$ref": REF.format(model="Problem")}}}}
    if status == 429:
        answer["headers"] = {"Retry-After": {"description": "seconds to wait",
                                             "schema": {"type": "integer", "minimum": 0}}}
    return answer


def _parameters(model: type[BaseModel], where: str, defs: dict) -> list[dict]:
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        # A parameter is absent or a string, never null: document the value's own schema.
        values = [p for p in prop.pop("anyOf", []) if p != {"type": "null"}]
        if len(values) == 1:
            prop = {**values[0], **prop}
        elif values:
            prop["anyOf"] = values
        if prop.get("default", ...) is None:
            del prop["default"]
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": where, "required": where == "path" or name in required,
                 "schema": prop}
        if description:
            param["description"] = description
        found.append(param)
    return found


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def document(app: Flask, *, title: str, version: str, description: str) -> dict:
    """The OpenAPI 3.1 document of every registered operation, from its models."""
    by_endpoint = {op.endpoint: op for op in OPERATIONS}
    models: dict[tuple[type[BaseModel], str], None] = {}
    for op in OPERATIONS:
        if op.body is not None:
            models[(op.body, "validation")] = None
        for model in op.models:
            models[(model, "validation")] = None
        for answer in op.responses.values():
            for model in (answer.model, *answer.models):
                if model is not None:
                    models[(model, "serialization")] = None
    from app.api.errors import ProblemDetails

    models[(ProblemDetails, "serialization")] = None
    _keys, top = models_json_schema(list(models), ref_template=REF)
    schemas = top.get("$defs", {})
    if "ProblemDetails" in schemas:
        schemas["Problem"] = schemas.pop("ProblemDetails")
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = by_endpoint.get(rule.endpoint)
        if op is None:
            continue
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
        if op.description:
            entry["description"] = op.description
        if op.tags:
            entry["tags"] = op.tags
        params = []
        if op.path is not None:
            params += _parameters(op.path, "path", schemas)
        if op.query is not None:
            params += _parameters(op.query, "query", schemas)
        if params:
            entry["parameters"] = params
        if op.body is not None or op.body_schema is not None:
            schema = op.body_schema if op.body_schema is not None else _ref(op.body)
            entry["requestBody"] = {"required": op.body_required,
                                    "content": {"application/json": {"schema": schema}}}
        elif op.raw_body is not None:
            entry["requestBody"] = op.raw_body
        answers: dict[str, Any] = {}
        for status, answer in sorted(op.responses.items()):
            documented: dict[str, Any] = {"description": answer.description}
            schema = answer.schema if answer.schema is not None else (
                _ref(answer.model) if answer.model is not None else None)
            if schema is not None:
                documented["content"] = {answer.media_type: {"schema": schema}}
            answers[str(status)] = documented
        statuses = set(op.problems)
        if not op.public:
            statuses |= {401, 429}
        if op.body is not None or op.body_schema is not None:
            statuses |= {400, 413, 415, 422}
        if op.path is not None or op.query is not None:
            statuses |= {400}
        for status in sorted(statuses):
            answers[str(status)] = _problem(status)
        entry["responses"] = answers
        if op.public:
            entry["security"] = []
        paths.setdefault(openapi_path(rule.rule), {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from `prefcenter api-keys create NAME`."}},
            "schemas": schemas,
        },
    }
