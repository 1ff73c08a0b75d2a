"""Kanri's URLs and `/bench/one-query/`: the baseline the API bench compares with, a login-free
JSON page that runs one indexed ORM query through the same middleware. Bench only."""
from django.http import JsonResponse
from django.urls import path

from store.models import Plan
from store.urls import urlpatterns as site


def one_query(request):
    return JsonResponse({"free": Plan.objects.filter(code="free").values_list("pk", flat=True)
                         .first()})


urlpatterns = [path("bench/one-query/", one_query), *site]
