"""One router per endpoint family; `api/app.py` includes each with one line."""
