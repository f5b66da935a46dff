"""The hub's configuration: `document.py` renders it as data from the typed `jupyterhub.*` settings,
and `jupyterhub_config.py` (a file the hub loads, not a module of this program) reads it in the hub."""
