"""Kanri's URLs and the two baselines the benches compare with, each a JSON page that runs one
indexed ORM query through the same middleware: `/bench/one-query/` (login-free, for the API)
and `/bench/one-query/signed-in/` (login required, as every portal page is: the session and the
user are read first, as for the pages). Bench only."""
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.urls import path

from store.models import Plan
from store.urls import urlpatterns as site


def one_query(request):
    return JsonResponse({"free": Plan.objects.filter(code="free").values_list("pk", flat=True)
                         .first()})


urlpatterns = [path("bench/one-query/", one_query),
               path("bench/one-query/signed-in/", login_required(one_query)), *site]
