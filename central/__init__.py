"""Quire central archive service: verifies, stores and catalogues bundles from stations."""
