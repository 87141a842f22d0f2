"""The routing rules as written in the configuration: the Rule model, its checks, and the seed's rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
)

from json_workflow.routing.conditions import Condition, check_field, condition
from json_workflow.routing.remote import Endpoint, check_headers, endpoint, is_url
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


def _folder_or_url(value: str) -> str:
    if is_url(value):
        endpoint(value)
        return value
    return _no_parent(value)


# A configured folder (paths.*): relative to root or absolute, never reaching up with "..".
Folder = Annotated[str, AfterValidator(_no_parent)]
# Which options each kind of destination takes (routing/remote.py); a folder takes none of them.
HTTP_OPTIONS = ("method", "headers", "token_env", "ca_file")
SFTP_OPTIONS = ("password_env", "key_file", "known_hosts")
REMOTE_OPTIONS = ("timeout", "concurrency")


class Rule(BaseModel):
    """Send a job to `destination` when every condition in `when` holds (field names in any case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    when: dict[str, When] = Field(min_length=1)
    # After `when`: its placeholders may name the fields `when` does. A folder, or a URL (routing/remote.py).
    destination: Annotated[str, AfterValidator(_folder_or_url)] = Field(min_length=1)
    # A placeholder's field absent or null: "fail" sets the file aside, "skip" leaves out only this copy.
    on_missing: Literal["fail", "skip"] = "fail"
    # An http(s):// destination's request, and the environment variable holding its bearer token.
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict, max_length=64)
    token_env: str | None = Field(default=None, min_length=1)
    ca_file: str | None = Field(default=None, min_length=1)  # the CAs its certificate is checked against
    # An sftp:// destination's login: a password (or key_file's passphrase) from the environment, a key file;
    # and the host keys it is checked against (an unknown key is an error, never accepted).
    password_env: str | None = Field(default=None, min_length=1)
    key_file: str | None = Field(default=None, min_length=1)
    known_hosts: str = Field(default="~/.ssh/known_hosts", min_length=1)
    # Either kind: seconds a connection or an answer may take, and copies sent at once.
    timeout: float = Field(default=30.0, gt=0, le=3600)
    concurrency: int = Field(default=8, ge=1, le=64)

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

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @field_validator(*HTTP_OPTIONS, *SFTP_OPTIONS, *REMOTE_OPTIONS)
    @classmethod
    def _fits_destination(cls, value: Any, info: ValidationInfo) -> Any:
        # Only an option given is checked (defaults are not validated): a folder takes none of them.
        destination = info.data.get("destination")
        if destination is None:  # invalid: said already
            return value
        kind = endpoint(destination) if is_url(destination) else None
        option = info.field_name
        takes = () if kind is None else REMOTE_OPTIONS + (HTTP_OPTIONS if kind.is_http else SFTP_OPTIONS)
        if option not in takes:
            wanted = {
                **dict.fromkeys(HTTP_OPTIONS, "an https:// or http://"),
                **dict.fromkeys(SFTP_OPTIONS, "an sftp://"),
            }
            is_now = "a folder" if kind is None else f"{kind.scheme}://"
            raise ValueError(
                f"applies only to {wanted.get(option or '', 'a URL')} destination, and this rule's is {is_now}"
            )
        return value

    @property
    def endpoint(self) -> Endpoint | None:
        """Its destination as a URL taken apart; None when it is a folder."""
        return endpoint(self.destination) if is_url(self.destination) else None

    @property
    def placeholders(self) -> list[str]:
        """The fields its destination names."""
        return placeholders(self.destination, self.when)

    def describe(self) -> str:
        """The conditions as `check-config` prints them: ClientCode = RANK and Title matches glob '*x*'."""
        return " and ".join(f"{field} {test}" for field, test in self.when.items())
