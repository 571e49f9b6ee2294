"""Query parameter types several routes share."""

from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError


def _not_a_number(value: Any) -> Any:
    # pydantic reads a number, or a query's text of one, as Unix seconds or milliseconds by its size: a
    # guess no caller should have made for them (`since=2026` meant the year, and read as 1970).
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise PydanticCustomError(
            "datetime_type",
            "Must be an RFC 3339 date-time with a time zone (2026-11-30T09:00:00Z), not a number",
        )
    return value


def _is_number(text: str) -> bool:
    # float() takes what pydantic would read as a number, whitespace around it included.
    try:
        float(text)
    except ValueError:
        return False
    return True


# A moment given in a query: an RFC 3339 date-time with its zone, never a number.
QueryTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
