"""Flows take their options from the one model, `tasks.options.Options`.

`takes_options(job)` gives a flow function, written with its endpoints' names and a last
`options` parameter, the parameters `tasks.options` defines for `job`: its endpoints
(`ENDPOINTS`), then a keyword parameter per option it takes, with the model's type, bounds,
default and description. Prefect validates them and its UI form shows them; the docstring's
`Args:` is built from them. The function gets the validated `Options`, built once.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic.fields import FieldInfo

from tasks.options import *  # noqa: F403 - the option types, where flows have always found them
from tasks.options import ENDPOINTS, KEYWORD_ENDPOINTS, Options

F = TypeVar("F", bound=Callable[..., Any])


def option_parameters(job: str) -> list[inspect.Parameter]:
    """The keyword-only parameters of `job`'s options, as the model defines them."""
    parameters = []
    for name in Options.of(job):
        field = Options.model_fields[name]
        annotation = Annotated[(field.annotation, *field.metadata, _described(field))]
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=annotation
            )
        )
    return parameters


def _described(field: FieldInfo) -> FieldInfo:
    return FieldInfo(description=field.description) if field.description else FieldInfo()


def takes_options(job: str) -> Callable[[F], F]:
    """Give `fn(endpoints..., options: Options)` the parameters of `job`'s options (see the
    module's docstring)."""

    def wrap(fn: F) -> F:
        own = inspect.signature(fn, eval_str=True)
        names = Options.of(job)
        endpoints = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY
                if name in KEYWORD_ENDPOINTS
                else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=annotation,
            )
            for name, annotation in ENDPOINTS[job].items()
        ]
        written = [p.name for p in own.parameters.values() if p.name != "options"]
        if written != list(ENDPOINTS[job]):
            raise TypeError(
                f"{fn.__name__} takes {written}; {job}'s endpoints are {ENDPOINTS[job]}"
            )

        @functools.wraps(fn)
        def run(*args, **kwargs):
            chosen = {k: kwargs.pop(k) for k in names if k in kwargs}
            return fn(*args, **kwargs, options=Options(**chosen))

        parameters = [*endpoints, *option_parameters(job)]
        run.__signature__ = own.replace(parameters=parameters)
        hints = typing.get_type_hints(fn, include_extras=True)
        run.__annotations__ = {
            **{p.name: p.annotation for p in parameters},
            "return": hints.get("return", own.return_annotation),
        }
        del run.__wrapped__  # inspect must read the signature above, not fn's
        run.__doc__ = _with_args(fn.__doc__, run)
        return run  # type: ignore[return-value]

    return wrap


def descriptions(fn: Callable[..., Any]) -> dict[str, str]:
    """{parameter: description} from the Annotated Field metadata of `fn`'s signature."""
    hints = typing.get_type_hints(fn, include_extras=True)
    found = {}
    for name in inspect.signature(fn).parameters:
        for meta in getattr(hints.get(name), "__metadata__", ()):
            if isinstance(meta, FieldInfo) and meta.description:
                found[name] = meta.description
    return found


def _with_args(doc: str | None, fn: Callable[..., Any]) -> str:
    lines = [f"    {name}: {text}" for name, text in descriptions(fn).items()]
    return inspect.cleandoc(doc or "") + "\n\nArgs:\n" + "\n".join(lines) + "\n"


def described(fn: F) -> F:
    """Append an `Args:` section built from the parameters' descriptions to `fn`'s docstring
    (for a flow that takes no options from the model)."""
    fn.__doc__ = _with_args(fn.__doc__, fn)
    return fn
