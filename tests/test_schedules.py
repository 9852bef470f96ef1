import pytest

from deephash.errors import ConfigError
from deephash.training.schedules import Schedule, parse_schedule


def values(schedule: Schedule, epochs: int) -> list[float]:
    return [schedule.value(e, e / max(epochs - 1, 1), epochs) for e in range(epochs)]


def test_step_doubling_reaches_the_end() -> None:
    name, schedule = parse_schedule("margin=step:1:16")
    assert name == "margin"
    assert values(schedule, 5) == [1, 2, 4, 8, 16]
    assert values(schedule, 10) == [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]
    assert values(parse_schedule("margin=step:1:16:3")[1], 7) == [1, 1, 1, 2, 2, 2, 4]


def test_constant_linear_cosine() -> None:
    assert values(parse_schedule("lambda=constant:0.5")[1], 3) == [0.5, 0.5, 0.5]
    assert values(parse_schedule("lambda=linear:0:1")[1], 5) == [0, 0.25, 0.5, 0.75, 1]
    cosine = values(parse_schedule("lambda=cosine:1:0")[1], 3)
    assert cosine == pytest.approx([1.0, 0.5, 0.0])


@pytest.mark.parametrize("text", ["margin", "margin=wobble:1:2", "margin=step:4:2",
                                  "margin=linear:1", "margin=linear:a:b"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="bad schedule"):
        parse_schedule(text)
