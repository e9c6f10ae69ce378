"""Quire scanning station: capture, image pipeline, page store, bundle sealing and sync."""
