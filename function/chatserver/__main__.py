"""``python -m chatserver --host 127.0.0.1 --port 8000``: the HTTP server with read deadlines."""

from .server import main

main()
