"""The gateway's HTTP side (FastAPI): the till, desk and operator API."""
