import pytest
from django.utils import translation


@pytest.fixture(autouse=True)
def _english():
    """Service messages are matched in English here; the Japanese ones are tested per screen."""
    with translation.override("en"):
        yield
