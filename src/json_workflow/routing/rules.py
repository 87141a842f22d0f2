"""The routing rules as written in the configuration: the Rule model, its checks, and the seed's rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator

from json_workflow.routing.conditions import Condition, check_field, condition
from json_workflow.routing.template import placeholders

CELTRA_FOLDER = "SYNC/MAKE/Celtra - Create_Rename - Project_Design File"
CELTRA_ELIGIBLE = ["CIBC", "OLIVER", "ADIDAS", "PAYPAL", "RECKITTBENCKISER", "BAYER", "3M", "RANK"]

# The seed's DESTINATIONS and CELTRA_ELIGIBLE_CLIENTS, as rules.
SEED_ROUTES: list[dict[str, Any]] = [
    {"name": "Monday Rank", "destination": "SYNC/MAKE/Monday Rank", "when": {"ClientCode": "RANK"}},
    {"name": "Monday RB", "destination": "SYNC/MAKE/Monday RB", "when": {"ClientCode": "RECKITTBENCKISER"}},
    {"name": "BISSELL-WRIKE/IN", "destination": "CLIENT-STORES/BISSELL-WRIKE/IN", "when": {"ClientCode": "BISSELL"}},
    {"name": "LOREAL/IN", "destination": "CLIENT-STORES/LOREAL/IN", "when": {"ClientCode": "LOREAL"}},
    {"name": "Celtra", "destination": CELTRA_FOLDER, "when": {"ClientCode": "CELTRA"}},
    {
        "name": "Celtra (eligible client)",
        "destination": CELTRA_FOLDER,
        "when": {"JobCategory": "CELTRA", "ClientCode": CELTRA_ELIGIBLE},
    },
]


def _no_parent(value: str) -> str:
    # A ".." climbs out of the folder it is written under, and json-workflow creates the folders below it.
    if ".." in value.split("/"):
        raise ValueError(
            'expected a folder relative to root, or an absolute one, with no ".." in it '
            "(it can lead out of the data root)"
        )
    return value


# A `when` value: equality with a string or list of strings, or one operator (conditions.py).
When = Annotated[Condition, PlainValidator(condition)]
# A configured folder (a destination, and paths.* too): relative to root or absolute, never reaching up with "..".
Folder = Annotated[str, AfterValidator(_no_parent)]


class Rule(BaseModel):
    """Send a job to `destination` when every condition in `when` holds (field names in any case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    when: dict[str, When] = Field(min_length=1)
    destination: Folder = Field(min_length=1)  # after `when`: its placeholders may name the fields `when` does
    # A placeholder's field absent or null: "fail" sets the file aside, "skip" leaves out only this copy.
    on_missing: Literal["fail", "skip"] = "fail"

    @field_validator("name", "destination")
    @classmethod
    def _printable(cls, text: str) -> str:
        # It is shown in logs, reports and terminals, and a destination becomes folder names.
        if not text.isprintable():
            raise ValueError("expected printable text: no control, invisible or line-breaking characters")
        return text

    @field_validator("when")
    @classmethod
    def _distinct_fields(cls, when: dict[str, Condition]) -> dict[str, Condition]:
        seen: dict[str, str] = {}
        for field in when:
            check_field(field)
            first = seen.setdefault(field.casefold(), field)
            if first != field:
                raise ValueError(f"{first} and {field} are the same field (field names match ignoring case); keep one")
        return when

    @field_validator("destination")
    @classmethod
    def _known_placeholders(cls, destination: str, info: ValidationInfo) -> str:
        placeholders(destination, info.data.get("when", {}))
        return destination

    @field_validator("on_missing")
    @classmethod
    def _something_to_miss(cls, on_missing: str, info: ValidationInfo) -> str:
        destination = info.data.get("destination")  # absent when it was invalid: said already
        if on_missing == "skip" and destination is not None and "{" not in destination:
            raise ValueError(
                'expected "skip" only on a destination with placeholders (such as "OUT/{StudioCode}"): '
                f"{destination!r} has none, so no field can be missing"
            )
        return on_missing

    @property
    def placeholders(self) -> list[str]:
        """The fields its destination names."""
        return placeholders(self.destination, self.when)

    def describe(self) -> str:
        """The conditions as `check-config` prints them: ClientCode = RANK and Title matches glob '*x*'."""
        return " and ".join(f"{field} {test}" for field, test in self.when.items())
