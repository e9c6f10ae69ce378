"""Central errors; each names its gRPC status, translated in one place (``grpc_errors``)."""

import grpc


class CentralError(Exception):
    """Base of every error the central service reports; ``str()`` is the whole message."""

    code = grpc.StatusCode.INTERNAL
    exit_code = 1


class ConfigError(CentralError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 78  # EX_CONFIG: restarting will not help


class NotEnrolled(CentralError):
    code = grpc.StatusCode.PERMISSION_DENIED


class SignatureInvalid(CentralError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ManifestRejected(CentralError):
    """The manifest's bytes break the contract (unknown version, malformed, wrong station)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UnknownBundle(CentralError):
    code = grpc.StatusCode.NOT_FOUND


class BlobRejected(CentralError):
    """Uploaded bytes that are not what the manifest promised."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UploadDamaged(CentralError):
    """Bytes that arrived damaged: a chunk failing its CRC, or a finished blob failing its digest.

    Nothing damaged is kept; the station checks its own copy and sends again from the committed offset.
    """

    code = grpc.StatusCode.DATA_LOSS


class WrongOffset(CentralError):
    code = grpc.StatusCode.OUT_OF_RANGE


class BlobsMissing(CentralError):
    """Commit before every blob arrived: offer again and upload what is missing."""

    code = grpc.StatusCode.ABORTED


class BundleRejected(CentralError):
    """The bundle cannot be catalogued; carries every reason."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, bundle_id: str, problems: list[str]):
        self.bundle_id, self.problems = bundle_id, problems
        super().__init__(f"bundle {bundle_id[:12]} rejected: " + "; ".join(problems))
