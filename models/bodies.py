"""What every request body's model shares."""

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    """A request's JSON body. A member it does not know is refused (422, naming it), not ignored: a
    misspelt optional field (`grace` for `grace_s`) would otherwise take its default without a word, and
    the caller learn of it only from what followed (a key rotated with a day's grace, not the one asked)."""

    model_config = ConfigDict(extra="forbid")
