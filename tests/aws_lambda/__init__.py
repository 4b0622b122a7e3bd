"""The Lambda adapter: event parsing, dispatch, and the handler under the Runtime Interface Emulator."""
