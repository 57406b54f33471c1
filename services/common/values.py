"""What a feature value may be: the rule the API's checks and the batch chunks share."""

from __future__ import annotations

#: The largest magnitude a feature may have: float32's largest finite value
#: (``np.finfo(np.float32).max``). scikit-learn's trees cast their input to float32, where a
#: larger value is infinity, and a float64 this far below its own limit leaves scaling and
#: linear models room to compute without overflowing.
MAX_MAGNITUDE = 3.4028234663852886e38
FINITE_VALUES = (f"every value must be a finite number between {-MAX_MAGNITUDE:.7g} and "
                 f"{MAX_MAGNITUDE:.7g}")

#: The dtype of a feature that holds text (a trained model's categories): its values are
#: strings, or null where missing.
STRING_DTYPE = "string"
#: The dtype of a feature that holds booleans: its values are true or false (0 and 1 stand
#: for them), which the model takes as the numbers 0 and 1.
BOOL_DTYPE = "bool"
