"""core.frozen.fast_init: the same values as dataclasses' own __init__, still frozen."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from jobtrail.core import model
from jobtrail.core.frozen import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class Sample:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Reference:  # the same fields with dataclasses' own __init__
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: tuple[int, ...] = ()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, "x"), {}), ((1,), {"c": [5]}), ((), {"a": 2, "d": (1, 2)}), ((3, "y", [1], (4,)), {})],
)
def test_builds_what_the_dataclass_init_builds(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    ours, theirs = Sample(*args, **kwargs), Reference(*args, **kwargs)  # type: ignore[arg-type]
    assert dataclasses.astuple(theirs) == dataclasses.astuple(ours)


def test_each_default_factory_value_is_fresh_and_an_explicit_value_is_kept() -> None:
    first, second = Sample(1), Sample(1)
    assert [] == first.c and first.c is not second.c
    given: list[int] = []
    assert Sample(1, c=given).c is given


def test_still_frozen_hashable_replaceable_and_picklable() -> None:
    value = Sample(1, "x", [], (2,))
    with pytest.raises(FrozenInstanceError):
        value.a = 2  # type: ignore[misc]
    hashable = Sample(1, "x", (), (2,))  # type: ignore[arg-type]
    assert hash(Reference(1, "x", (), (2,))) == hash(hashable)  # type: ignore[arg-type]
    assert Sample(5, "x", [], (2,)) == dataclasses.replace(value, a=5)
    assert value == pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes


def test_argument_errors_are_the_usual_type_errors() -> None:
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample(1, e=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample(1, "b", [], (), 5)  # type: ignore[call-arg]


def test_refuses_classes_it_cannot_serve_faithfully() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class HiddenField:
        a: int
        b: int = field(default=0, init=False)

    for cls in (Mutable, NoSlots, PostInit, HiddenField):
        with pytest.raises(TypeError):
            fast_init(cls)


@pytest.mark.parametrize(
    "cls",
    [
        model.Observation,
        model.Delivery,
        model.Event,
        model.Job,
        model.OutboxItem,
        model.OutboxEntry,
        model.IntakeResult,
    ],
)
def test_every_model_value_stores_each_argument_in_its_own_field(cls: type) -> None:
    markers = {f.name: object() for f in dataclasses.fields(cls)}
    by_position = cls(*markers.values())
    by_name = cls(**markers)
    assert markers == {name: getattr(by_position, name) for name in markers}
    assert markers == {name: getattr(by_name, name) for name in markers}
    with pytest.raises(FrozenInstanceError):
        setattr(by_name, next(iter(markers)), None)
