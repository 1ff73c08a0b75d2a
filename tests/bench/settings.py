"""`make bench`'s site: Kanri's settings and URLs plus one baseline page that only the bench
serves (tests/bench/urls.py). Never used by the site itself."""
from store.settings import *  # noqa: F403

ROOT_URLCONF = "tests.bench.urls"
