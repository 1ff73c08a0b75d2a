"""The site (settings, urls, Celery app) and the catalog: plans, add-ons, prices, limits."""
from .celery import app as celery_app

__all__ = ("celery_app",)
