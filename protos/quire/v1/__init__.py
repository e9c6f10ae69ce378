"""gRPC stubs generated from sync.proto at build time (``make protos``); never edited by hand."""
