"""Errors raised when bytes do not follow the contract."""


class ContractError(Exception):
    """Bytes that do not follow one of Quire's stored or signed formats."""


class UnknownFormat(ContractError):
    """A format or version this build does not know; never guess at its meaning."""

    def __init__(self, kind: str, found: object, known: tuple[str, ...]):
        self.kind, self.found, self.known = kind, found, known
        super().__init__(
            f"unknown {kind} format {found!r} (this build reads {', '.join(known)}); "
            "upgrade Quire on the reading side"
        )


class Malformed(ContractError):
    """Bytes that claim a known format but break its rules; carries every problem found."""

    def __init__(self, kind: str, problems: list[str]):
        self.kind, self.problems = kind, problems
        super().__init__(f"malformed {kind}: " + "; ".join(problems))


class BadSignature(ContractError):
    """A signature that does not verify under the key it claims."""

    def __init__(self, what: str, key_id: str):
        self.what, self.key_id = what, key_id
        super().__init__(f"{what}: signature does not verify under key {key_id}")
