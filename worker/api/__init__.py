"""The HTTP API (``copydesk serve``): FastAPI on uvicorn over the same store and queue as the CLI.

Modules: :mod:`.app` builds the application; :mod:`.auth` checks the API key and its role on every route;
:mod:`.limits` refuses oversized bodies before they are read; :mod:`.errors` turns copydesk errors into one
JSON shape; :mod:`.jobs`, :mod:`.articles` and :mod:`.system` are the routes. The API has no logic of its
own: each route calls the functions the CLI calls (``worker.queue.submit``, the store, ``worker.review``).
"""
