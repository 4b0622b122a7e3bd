"""Checks shared by the HTTP tests: an error answer is the documented body, for this request."""


def assert_error(response, status: int, error_type: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type, error
    assert error["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in error["message"], error["message"]
    return error
