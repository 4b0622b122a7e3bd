"""ChatServer: a Whisper speech-to-text service for FastAPI, uvicorn and AWS Lambda."""

__version__ = "0.1.0"
