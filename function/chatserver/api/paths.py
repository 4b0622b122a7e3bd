"""Which path of the app a request is for, whatever prefix (an API Gateway stage) it came under."""

from starlette.types import Scope


def app_path(scope: Scope) -> str:
    """The request's path inside the app, without the root path (an API Gateway stage)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path
