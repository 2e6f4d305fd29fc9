"""bench/http_load.py's settings: the panel's, plus the bare baseline view's URL."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.http_urls"
