"""A problem a check found: what kind, in what, and the detail a person can act on."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"
