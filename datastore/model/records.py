"""The JSON form shared by the flat records the store and the machine keep (one object per file)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="JsonRecord")


class JsonRecord:
    """Mixin for a dataclass of plain fields stored as one JSON object.

    Readers ignore keys they do not know, so that an older reader still reads what a newer
    writer added (records outlive the code that wrote them: a store is shared by versions of
    this tool).
    """

    def to_json(self) -> dict[str, Any]:
        """Plain dict for storage and ``--json``."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        """Build from a stored object, ignoring fields a newer writer may have added."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})
