"""The archive's web console (数字化阅档): every role's work in a browser, served by the archive itself.

It decides nothing: every permission is the use cases' (``central.access`` and the others, through
``central.permissions``); the console signs people in, renders pages and watermarks what readers see.
"""

from .app import create_app
from .server import WebServer, start

__all__ = ["WebServer", "create_app", "start"]
