"""The snapshot of scikit-learn's parameter constraints that training requests are checked
against without scikit-learn (``services.common.training_spec``).

    python -m ml.training_constraints > services/common/training_constraints.json

For each allow-listed estimator: whether it gives probabilities, the parameters the
platform sets, and for every other parameter its constraints as data (``kind`` and what
that kind needs; for a type, the JSON value types that are instances of it), whether it
takes booleans, and what it must be in scikit-learn's words. Run it again after upgrading
scikit-learn; tests/unit/test_training_constraints.py fails until the file matches.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import orjson
import sklearn

# Private to scikit-learn: how it turns a declared constraint into an object with
# is_satisfied_by; pyproject.toml pins scikit-learn to the minor version tested.
from sklearn.utils import _param_validation as pv

from ml.training import ESTIMATORS
from services.common.training_spec import JSON_TYPES, PLATFORM_PARAMETERS

#: scikit-learn's helpers that are one of several constraints; each is listed as its parts.
_UNIONS = (pv._Booleans, pv._VerboseHelper, pv._RandomStates, pv._CVObjects, pv.MissingValues)


def snapshot() -> dict[str, Any]:
    """The snapshot, as written to the file."""
    return {
        "scikit-learn": ".".join(sklearn.__version__.split(".")[:2]),
        "estimators": {name: _estimator(cls) for name, (cls, _) in sorted(ESTIMATORS.items())},
    }


def _estimator(cls: type) -> dict[str, Any]:
    known = cls().get_params()
    declared: dict[str, Any] = getattr(cls, "_parameter_constraints", {})
    return {
        "predict_proba": hasattr(cls(), "predict_proba"),
        "platform_parameters": sorted(p for p in PLATFORM_PARAMETERS if p in known),
        "parameters": {p: _parameter(declared.get(p, "no_validation"))
                       for p in sorted(known) if p not in PLATFORM_PARAMETERS},
    }


def _parameter(declared: Any) -> dict[str, Any]:
    if declared == "no_validation":
        return {"constraints": None, "booleans": True, "must_be": "anything"}
    made = [pv.make_constraint(c) for c in declared]
    shown = [c for c in made if not c.hidden]
    texts = [_text(c) for c in shown]
    return {
        "constraints": [data for c in made for data in _data(c)],
        "booleans": any(c == "boolean" or c is bool for c in declared),
        # As validate_parameter_constraints words its error, options in sorted order.
        "must_be": texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}",
    }


def _text(constraint: Any) -> str:
    """``str(constraint)`` with a set of options in sorted order, the same on every run."""
    if isinstance(constraint, pv.Options):
        constraint = copy.copy(constraint)
        constraint.options = sorted(constraint.options, key=repr)
    return str(constraint)


def _json_types(kind: type) -> list[str]:
    return [name for python_type, name in JSON_TYPES.items() if issubclass(python_type, kind)]


def _data(constraint: Any) -> Iterable[dict[str, Any]]:
    if isinstance(constraint, _UNIONS):
        for part in constraint._constraints:
            yield from _data(part)
    elif isinstance(constraint, pv._NoneConstraint):
        yield {"kind": "none"}
    elif isinstance(constraint, pv._NanConstraint):
        yield {"kind": "nan"}
    elif isinstance(constraint, pv._PandasNAConstraint):
        yield {"kind": "pandas_na"}
    elif isinstance(constraint, pv._InstancesOf):
        yield {"kind": "instance_of", "type": _type_name(constraint.type),
               "json_types": _json_types(constraint.type)}
    elif isinstance(constraint, pv.Options):
        yield {"kind": "options", "type": _type_name(constraint.type),
               "json_types": _json_types(constraint.type),
               "options": sorted(constraint.options, key=repr)}
    elif isinstance(constraint, pv.Interval):
        yield {"kind": "interval", "type": _type_name(constraint.type),
               "json_types": _json_types(constraint.type), "left": constraint.left,
               "right": constraint.right, "closed": constraint.closed}
    elif isinstance(constraint, pv._ArrayLikes):
        yield {"kind": "array_like"}
    elif isinstance(constraint, pv._SparseMatrices):
        yield {"kind": "sparse_matrix"}
    elif isinstance(constraint, pv._Callables):
        yield {"kind": "callable"}
    elif isinstance(constraint, pv._IterablesNotString):
        yield {"kind": "iterable_not_string"}
    elif isinstance(constraint, pv.HasMethods):
        yield {"kind": "has_methods", "methods": list(constraint.methods)}
    else:
        raise TypeError(f"no snapshot for scikit-learn's constraint {constraint!r}: "
                        "teach ml/training_constraints.py and training_spec.satisfies it")


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def render() -> bytes:
    """The file's bytes."""
    return orjson.dumps(snapshot(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render())
