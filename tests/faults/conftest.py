import uuid

import pytest
from django.conf import settings

from accounts.models import Business, PhoneLine

# Bayview's on-call contact has texted STOP to our number: every summary SMS
# to her is refused (21610) or suppressed, and goes by email instead.
OPTED_OUT = "+14155550131"


@pytest.fixture
def base_ids(businesses) -> dict[str, str]:
    """Every business with an Airtable base of its own: phone line -> base."""
    for business in Business.objects.all():
        business.airtable_base_id = f"app{uuid.uuid4().hex[:14]}"
        business.save(update_fields=["airtable_base_id"])
    return dict(PhoneLine.objects.values_list("number", "business__airtable_base_id"))


def opt_out(twilio) -> None:
    twilio.reject(OPTED_OUT, 21610, from_number=settings.TWILIO_FROM_NUMBER)
