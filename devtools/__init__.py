"""Development tooling: the demo stack (`manage.py runstack`), the demo seed, the testbed
command and the embedded Redis.

Installed only when PADDOCK_DEV_TOOLS is on (DEBUG and test runs default to on; the
Makefile turns it on for `make run`, `make testbed` and friends); production settings
leave the app out, so none of this code is importable through Django there, and the
runtime packages (config, hosting, dashboard, workers) never import it or `testbed`.
"""
