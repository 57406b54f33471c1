"""The snapshot of scikit-learn's parameter constraints (services/common/
training_constraints.json): written by ml/training_constraints.py from the scikit-learn
installed, and read by services/common/training_spec.py, which must decide every value as
scikit-learn does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from ml.training import ESTIMATORS
from ml.training_constraints import render
from services.common import training_spec
from services.common.training_spec import (
    ESTIMATOR_TASKS,
    PLATFORM_PARAMETERS,
    SpecError,
    check_parameter,
    constraints,
)

SNAPSHOT = Path(training_spec.__file__).with_name(training_spec.CONSTRAINTS_FILE)

#: Values tried on every parameter: each JSON type, signs, zero, fractions, large ones.
COMMON_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 3, 0.0, 1.0, -1.0, 0.5, 1.5, -0.5, 1e-12, 100, 2**40,
    1e300, -1e300, math.inf, -math.inf, math.nan, "", "auto", "sqrt", "none", "None",
    "balanced", [], [1, 2], ["a"], {}, {"0": 1.0}, [[1, 2]],
]


def test_the_snapshot_is_what_the_installed_scikit_learn_declares() -> None:
    assert SNAPSHOT.read_bytes() == render(), (
        "regenerate it: python -m ml.training_constraints > "
        "services/common/training_constraints.json")
    assert set(constraints()["estimators"]) == set(ESTIMATOR_TASKS) == set(ESTIMATORS)


def values_for(parameter: dict[str, Any]) -> list[Any]:
    """The common values and, from the parameter's constraints, each bound, just inside
    and just outside it (as ints and floats), and each option and a near miss of it."""
    values = list(COMMON_VALUES)
    for constraint in parameter["constraints"] or []:
        if constraint["kind"] == "interval":
            for bound in (constraint["left"], constraint["right"]):
                if bound is None:
                    continue
                for step in (0, 1, -1, 0.5, -0.5, 1e-9, -1e-9):
                    values += [bound + step, float(bound + step)]
                    if float(bound + step).is_integer():
                        values.append(int(bound + step))
        elif constraint["kind"] == "options":
            for option in constraint["options"]:
                values += [option, f"{option}x", str(option).upper()]
    return values


def scikit_learn_accepts(cls: type, param: str, value: Any) -> str | None:
    """None when scikit-learn takes ``value`` for ``param`` (a boolean only where the
    parameter takes booleans: true is no number to a request), else its message."""
    declared = cls._parameter_constraints[param]
    try:
        validate_parameter_constraints({param: declared}, {param: value},
                                       caller_name=cls.__name__)
    except InvalidParameterError as exc:
        return str(exc)
    if isinstance(value, bool) and not any(c == "boolean" or c is bool for c in declared):
        return "a boolean"
    return None


@pytest.mark.parametrize("name", sorted(ESTIMATOR_TASKS))
def test_each_value_is_taken_or_refused_as_scikit_learn_does(name: str) -> None:
    cls = ESTIMATORS[name][0]
    snapshot = constraints()["estimators"][name]
    checked = 0
    for param, parameter in snapshot["parameters"].items():
        if param not in cls._parameter_constraints:
            continue
        for value in values_for(parameter):
            refusal = scikit_learn_accepts(cls, param, value)
            try:
                check_parameter(name, f"hyperparameters.{param}", param, value)
            except SpecError as exc:
                assert refusal is not None, (param, value, str(exc))
                assert exc.field == f"hyperparameters.{param}"
                assert f": must be {parameter['must_be']}; got " in str(exc)
                if "among" not in parameter["must_be"] and refusal != "a boolean":
                    # The same words as scikit-learn's (options are sorted here).
                    assert f" must be {parameter['must_be']}. Got " in refusal
            else:
                assert refusal is None, (param, value, refusal)
            checked += 1
    assert checked >= len(COMMON_VALUES) * len(set(snapshot["parameters"])
                                                & set(cls._parameter_constraints))


def test_unknown_and_platform_parameters_are_named() -> None:
    for name, (cls, _) in ESTIMATORS.items():
        known = cls().get_params()
        snapshot = constraints()["estimators"][name]
        assert set(snapshot["parameters"]) == set(known) - set(PLATFORM_PARAMETERS)
        for param in PLATFORM_PARAMETERS:
            if param in known:
                with pytest.raises(SpecError, match="set by inferq"):
                    check_parameter(name, f"hyperparameters.{param}", param, 1)
        with pytest.raises(SpecError, match=f"{name} has no parameter 'nope'"):
            check_parameter(name, "hyperparameters.nope", "nope", 1)
