"""Twilio SMS status callbacks as Twilio posts them, signed with the test token."""

from urllib.parse import urlencode

from django.test import Client
from twilio.request_validator import RequestValidator

from standins.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

URL = "/webhooks/twilio/sms-status/"
SIGNED_URL = "https://afterhours.example.test/webhooks/twilio/sms-status/"
FORM = "application/x-www-form-urlencoded"


def status_params(
    *,
    sid: str,
    status: str,
    code: str = "",
    to: str = "+16175550177",
    sender: str = "+15005550006",
) -> dict[str, str]:
    """The parameters Twilio posts for one status of one message."""
    params = {
        "AccountSid": DEFAULT_ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": sender,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": to,
    }
    if code:
        params["ErrorCode"] = code
    return params


def signature(params: dict[str, str], *, token: str = DEFAULT_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(SIGNED_URL, params)


def post_status(client: Client, params: dict[str, str], sig: str | None = "sign"):
    """POST a status callback; `sig="sign"` signs it with the test token."""
    if sig == "sign":
        sig = signature(params)
    headers = {"HTTP_X_TWILIO_SIGNATURE": sig} if sig else {}
    return client.post(URL, data=urlencode(params), content_type=FORM, **headers)
