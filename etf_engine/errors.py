"""The one error type the ledgers raise; its code maps one-to-one onto a gRPC status code."""

INVALID_ARGUMENT = "INVALID_ARGUMENT"
OUT_OF_RANGE = "OUT_OF_RANGE"
NOT_FOUND = "NOT_FOUND"
ALREADY_EXISTS = "ALREADY_EXISTS"
PERMISSION_DENIED = "PERMISSION_DENIED"
FAILED_PRECONDITION = "FAILED_PRECONDITION"


class EngineError(Exception):
    """A refused request. Raised before anything changes, so a refusal never leaves a trace.

    ``code`` is a gRPC status code name; ``message`` names the field or the reason code
    (for FAILED_PRECONDITION the message starts with the SPEC reason code).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EngineError) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))


def invalid(field: str, why: str) -> EngineError:
    return EngineError(INVALID_ARGUMENT, f"{field}: {why}")


def out_of_range(field: str, why: str) -> EngineError:
    return EngineError(OUT_OF_RANGE, f"{field}: {why}")


def not_found(what: str, ident: str) -> EngineError:
    return EngineError(NOT_FOUND, f"{what} {ident!r} not found")


def precondition(reason: str, detail: str) -> EngineError:
    return EngineError(FAILED_PRECONDITION, f"{reason}: {detail}")
