"""The HTTP side: the routes, their plumbing (errors, auth, CORS, limits), uvicorn and the page."""
