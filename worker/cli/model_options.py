"""Typer options generated from an options model: every field of a pydantic model becomes one option whose
flag, type, default and help text come from the field, so that each is written once (``worker.lab.options``).

``@options_from(TrainingOptions, into="options", ...)`` replaces the command's ``options`` parameter by one
option per field (``--field-name``, plus any older flags given as aliases) and calls the command with the
validated model; a value the model refuses is reported as the given error, naming the option.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from worker.errors import CopydeskError

F = TypeVar("F", bound=Callable[..., Any])


def flag(name: str) -> str:
    """The option flag of a field: ``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


def _is_list(info: FieldInfo) -> bool:
    return get_origin(info.annotation) is list


def _enum_values(annotation: Any) -> list[str]:
    """The values of an enum or ``Literal`` annotation (shown as ``sft|dpo`` in help, not as the type's name);
    ``[]`` otherwise."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return []


def option_parameter(name: str, info: FieldInfo, aliases: Sequence[str] = ()) -> inspect.Parameter:
    """The command parameter for one field: a list field is one comma-separated string."""
    annotation: Any = info.annotation
    default = info.get_default(call_default_factory=True)
    help_text = info.description or ""
    if _is_list(info):
        annotation, default = str, ",".join(default)
        help_text = f"{help_text} Comma-separated.".strip()
    choices = _enum_values(annotation)
    option = typer.Option(flag(name), *aliases, help=help_text, metavar="|".join(choices) if choices else None)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Parameter(name, kind, default=default, annotation=Annotated[annotation, option])


def build_model(model: type[BaseModel], values: Mapping[str, Any], error: type[CopydeskError], what: str) -> Any:
    """The model from the options' values (a list field split at commas); a refused value raises ``error``."""
    fields = model.model_fields
    parsed = {
        name: [part.strip() for part in value.split(",") if part.strip()] if _is_list(fields[name]) else value
        for name, value in values.items()
    }
    try:
        return model(**parsed)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise error(f"{what} option {field}: {problem['msg']}") from None


def options_from(
    model: type[BaseModel],
    *,
    into: str,
    error: type[CopydeskError],
    what: str,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> Callable[[F], F]:
    """Decorator: the command's parameter ``into`` becomes one option per field of ``model``."""
    generated = [
        option_parameter(name, info, (aliases or {}).get(name, ())) for name, info in model.model_fields.items()
    ]

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        parameters = list(signature.parameters.values())
        at = [parameter.name for parameter in parameters].index(into)
        replaced = [*parameters[:at], *generated, *parameters[at + 1 :]]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in model.model_fields}
            return command(*args, **kwargs, **{into: build_model(model, values, error, what)})

        wrapper.__signature__ = signature.replace(parameters=replaced)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in replaced}
        return wrapper  # type: ignore[return-value]

    return decorate
