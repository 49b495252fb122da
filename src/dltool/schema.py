"""Building blocks every dltool schema shares: the experiment file's and the sweep file's.

No TensorFlow here: ``dltool validate`` and ``dltool layers`` import this.
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import Strict as _StrictType


class Strict(BaseModel):
    """Unknown keys are errors, never warnings (a misspelled key must not be ignored)."""

    # defer_build: each model's validator is built when first used (as part of the config's),
    # not when its class is made: 36 ms less CPU for each `dltool validate`.
    model_config = ConfigDict(extra="forbid", defer_build=True)


# A whole number written as one: true, 2.0 and "3" are refused (lax pydantic takes them as 1, 2, 3).
Int = Annotated[int, _StrictType()]


# How each pattern of our schemas reads to a person: a mismatch names the rule, not the regex.
PATTERN_RULES: dict[str, str] = {}


def matching(pattern: str, rule: str, default: Any = ..., **kwargs: Any) -> Any:
    """A ``Field`` with a ``pattern`` whose mismatch is reported as "expected <rule>"."""
    PATTERN_RULES[pattern] = rule
    return Field(default, pattern=pattern, **kwargs)


# A run name becomes a folder name: letters, digits, '.', '_' and '-', at most 80.
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
RUN_NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 80 characters"  # fmt: skip


def _no_double_dot(name: str) -> str:
    if ".." in name:  # a folder name, never a path: nothing that reads like one
        raise ValueError(f"not allowed (received {name!r}; expected no '..' in a run name)")
    return name


RunName = Annotated[str, matching(RUN_NAME_PATTERN, RUN_NAME_RULE), AfterValidator(_no_double_dot)]
