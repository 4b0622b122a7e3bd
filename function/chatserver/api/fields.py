"""Every form field and query parameter a request sends is one its route declares, or a 400.

What a route accepts is read from the route itself (FastAPI's dependant tree: its own
parameters and those of its dependencies, with their aliases), never from a list kept by hand,
so a field added to a route is accepted the moment it is declared.
"""

from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from starlette.requests import HTTPConnection, Request

from ..core.errors import NotAForm, UnknownField

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Accepted:
    """A route's form fields and query parameters: every name a request may use (``names``),
    the documented one of each first (``shown``), and whether a form field is required."""

    form_names: frozenset[str]
    form_shown: list[str]
    query_names: frozenset[str]
    query_shown: list[str]
    form_required: bool


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a parameter declared as a whole model (``Annotated[M, Form()]``)."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _names(alias: str, info: FieldInfo) -> list[str]:
    """The names a request may send one field under: its alias, or each of its alias choices."""
    choices = info.validation_alias
    if isinstance(choices, AliasChoices):
        return [c for c in choices.choices if isinstance(c, str)] or [alias]
    if isinstance(choices, str):
        return [choices]
    return [alias]


def _fields(params: list[Any]) -> list[tuple[list[str], bool]]:
    """(names, required) of each field, a model's fields one by one."""
    found: list[tuple[list[str], bool]] = []
    for param in params:
        model = _model_of(param.field_info.annotation)
        if model is not None:
            found += [
                (_names(info.alias or name, info), info.is_required() and param.field_info.is_required())
                for name, info in model.model_fields.items()
            ]
        else:
            found.append((_names(param.alias, param.field_info), param.field_info.is_required()))
    return found


def accepted(route: APIRoute) -> Accepted:
    form: list[tuple[list[str], bool]] = []
    query: list[tuple[list[str], bool]] = []
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop(0)
        form += _fields(dependant.body_params)
        query += _fields(dependant.query_params)
        pending += dependant.dependencies
    return Accepted(
        form_names=frozenset(n for names, _ in form for n in names),
        form_shown=list(dict.fromkeys(names[0] for names, _ in form)),
        query_names=frozenset(n for names, _ in query for n in names),
        query_shown=list(dict.fromkeys(names[0] for names, _ in query)),
        form_required=any(required for _, required in form),
    )


async def declared_fields_only(connection: HTTPConnection) -> None:
    """An app-wide dependency: a form field or query parameter the route does not declare is a
    400 (``unknown_field``) that names it, where it would otherwise be dropped without a word.

    Routes that take neither a form nor a query (``/health``) are left alone: they have no option
    a misspelt name could have meant; nor is the WebSocket (``/v1/realtime``), which reads its
    own. Runs before FastAPI validates the declared fields, so an unknown name is reported first.
    """
    route = connection.scope.get("route")
    if not isinstance(connection, Request) or not isinstance(route, APIRoute):
        return
    request = connection
    fields = accepted(route)
    if not fields.form_names and not fields.query_names:
        return
    where = f"{request.method} {route.path}"
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in fields.query_names]
    if unknown:
        misplaced = any(name in fields.form_names for name in unknown)
        hint = "Its form fields go in the body (multipart/form-data), not in the URL." if misplaced else ""
        raise UnknownField(where, "query parameter", unknown, fields.query_shown, hint)
    if route.body_field is None or not isinstance(route.body_field.field_info, params.Form):
        return  # no form read (a JSON body is pydantic's to check)
    # FastAPI has parsed the form for the route already: this is the cached FormData.
    form = await request.form()
    unknown = [name for name in dict.fromkeys(form) if name not in fields.form_names]
    if unknown:
        raise UnknownField(where, "form field", unknown, fields.form_shown)
    content_type = request.headers.get("content-type", "").strip().lower()
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if not form and has_body and not fields.form_required and not content_type.startswith(_FORM_TYPES):
        # Starlette reads only forms: a JSON body's fields would vanish. A route with a required
        # field needs no check here: FastAPI says that field is missing.
        raise NotAForm(content_type)
