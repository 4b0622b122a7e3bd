"""Live dictation over OpenAI's Realtime transcription protocol (the WebSocket at /v1/realtime).

- ``events``: the client events this server reads, parsed into pydantic models;
- ``server_events``: the events it sends, as OpenAI's SDK (``types/realtime``) reads them;
- ``config``: a session's effective configuration and how updates (GA and beta) change it;
- ``turns``: the uncommitted audio and server VAD's turns on it;
- ``decoding``: provisional and final decodes, through the one service, under admission;
- ``state``: what a session's reader and its decoder share (audio, open turn, committed turns);
- ``transcriber``: the decoder task, on that state: provisional deltas and final texts;
- ``limits``: the pace of audio and the count of open sessions;
- ``session``: one connection's state machine, from ``session.created`` to the close.
"""
