"""What the original SIGNIFICANCE study reported, to print beside our own figures.

Transcribed from the study's Table 5 (`docs/results.png` of the original README), as
as its README reports them. The study chose each checkpoint on the test
set, so its figures are optimistic next to ours, which choose on a validation split.
"""

from __future__ import annotations

STUDY_SOURCE = "SIGNIFICANCE study, Table 5 (test accuracy and overall F1)"

# task id -> figures of Table 5: accuracy and overall (macro) F1.
STUDY_RESULTS: dict[str, dict[str, float]] = {
    "artefact": {"accuracy": 0.97, "f1": 0.97},
    "coins/material": {"accuracy": 0.92, "f1": 0.92},
    "frescoes/location": {"accuracy": 0.93, "f1": 0.93},
    "frescoes/period": {"accuracy": 0.94, "f1": 0.94},
    "icons/location": {"accuracy": 0.99, "f1": 0.99},
    "manuscripts/location": {"accuracy": 0.99, "f1": 0.99},
    "manuscripts/language": {"accuracy": 0.98, "f1": 0.98},
    "manuscripts/description": {"accuracy": 0.93, "f1": 0.93},
}
