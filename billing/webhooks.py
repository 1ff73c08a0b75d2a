"""The processor's webhook endpoint, POST /billing/webhooks/stripe/: no login and no CSRF token,
as the signature is the authentication. Thin: billing.services.webhooks verifies, stores and
processes the event. 400 (nothing written) for a delivery whose signature fails; 200 once it is
stored and processed or found to be a repeat; 503/500 to have it delivered again."""
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import gateway
from billing.services.webhooks import webhook_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        receipt = webhook_receive(payload=request.body,
                                  signature=request.headers.get("Stripe-Signature", ""))
    except gateway.SignatureInvalid as refused:
        logger.warning("webhook refused: %s", refused)
        return HttpResponse("signature refused", status=400, content_type="text/plain")
    return HttpResponse(receipt.event.outcome, status=receipt.status, content_type="text/plain")
