"""Checks shared by the HTTP tests: an error answer is the documented body, for this request;
the routes an app serves."""

from fastapi.routing import APIRoute


def assert_error(response, status: int, error_type: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type, error
    assert error["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


def api_routes(routes) -> list[APIRoute]:
    """The app's routes, with those of included routers (FastAPI keeps them apart)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(api_routes(route.original_router.routes))
    return found
