"""The HTTP side: the FastAPI app, one module per router, and what the routers share."""
