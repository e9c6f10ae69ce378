"""The contract between Quire's stations, central service and tools.

Canonical bytes, signing contexts, key files and the versioned bundle and receipt formats live
here; the gRPC stubs generated from the .proto files live in the ``quire.v1`` package.
"""
