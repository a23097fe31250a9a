"""gantool explore: a local web page for looking at a generator (seeds, truncation, walks,
classes) on any backend. ``session`` holds the model and answers the page's questions;
``app`` serves the page (the ``explore`` extra: Starlette and Uvicorn)."""
