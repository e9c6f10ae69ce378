"""Central errors; each names its gRPC status and its scope — what a refusal is about, which is all a
station decides on (quire.refusal: "bundle", "caller" or "call") — translated in one place (``grpc_errors``)."""

import grpc


class CentralError(Exception):
    """Base of every error the central service reports; ``str()`` is the whole message."""

    code = grpc.StatusCode.INTERNAL
    scope = "call"
    exit_code = 1
    audited: bool | None = None   # a refusal once logged (True) or counted (False): not logged again
    refuses_nobody = False        # the archive's own back-off ("come back shortly"): the service log, not the audit log


class ConfigError(CentralError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 78  # EX_CONFIG: restarting will not help


class NotEnrolled(CentralError):
    code = grpc.StatusCode.PERMISSION_DENIED
    scope = "caller"


class SignatureInvalid(CentralError):
    code = grpc.StatusCode.UNAUTHENTICATED
    scope = "caller"


class ManifestSignatureInvalid(SignatureInvalid):
    """A bundle's manifest signature fails under the key the station's calls verify with."""

    scope = "bundle"


class ManifestRejected(CentralError):
    """The manifest's bytes break the contract (unknown version, malformed, wrong station)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    scope = "bundle"


class NotFound(CentralError):
    """No such dossier, material, page or consultation: what was named is not in the catalogue."""
    code = grpc.StatusCode.NOT_FOUND


class UnknownBundle(CentralError):
    code = grpc.StatusCode.NOT_FOUND


class BlobRejected(CentralError):
    """Uploaded bytes that are not what the manifest promised."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    scope = "bundle"


class UploadDamaged(CentralError):
    """Bytes that arrived damaged: a chunk failing its CRC, or a finished blob failing its digest.

    Nothing damaged is kept; the station checks its own copy and sends again from the committed offset.
    """

    code = grpc.StatusCode.DATA_LOSS


class WrongOffset(CentralError):
    code = grpc.StatusCode.OUT_OF_RANGE


class StoreUnavailable(CentralError):
    """The object store holding the blobs did not answer or failed; what arrived is kept to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class BlobsMissing(CentralError):
    """Commit before every blob arrived: offer again and upload what is missing."""

    code = grpc.StatusCode.ABORTED


class BundleRejected(CentralError):
    """The bundle cannot be catalogued; carries every reason."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    scope = "bundle"

    def __init__(self, bundle_id: str, problems: list[str]):
        self.bundle_id, self.problems = bundle_id, problems
        super().__init__(f"bundle {bundle_id[:12]} rejected: " + "; ".join(problems))
