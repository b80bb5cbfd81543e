"""A cheaper `__init__` for frozen, slotted dataclasses.

The `__init__` that `@dataclass(frozen=True)` writes stores each field with
`object.__setattr__(self, name, value)`: a generic attribute lookup per field, about
0.2 us each. Intake builds several such values per delivery (an observation, the
delivery, the job, its event, the result), 40-odd fields. `fast_init` replaces that
`__init__` with one that stores each field through its slot descriptor directly, about
half the cost, with the same signature, defaults and default factories. The class stays
exactly as frozen: assignment after construction still raises FrozenInstanceError.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Apply above `@dataclass(frozen=True, slots=True)`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen, slotted dataclasses")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: fast_init does not call __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # checked above: a dataclass
    if any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__}: fast_init takes only plain positional fields")
    scope: dict[str, Any] = {"_NO_ARG": _NO_ARG}
    signature, body = [], []
    for f in fields:
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            signature.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            signature.append(f"{f.name}=_NO_ARG")
            value = f"_factory_{f.name}() if {f.name} is _NO_ARG else {f.name}"
        else:
            signature.append(f.name)
        body.append(f"    _set_{f.name}(self, {value})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + ("\n".join(body) or "    pass")
    exec(source, scope)  # noqa: S102 - our own source, built from the class's fields
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


class _NoArg:
    def __repr__(self) -> str:
        return "<factory default>"


_NO_ARG = _NoArg()
