"""factory_boy factories for the rows most tests need."""

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Business, OnCallContact, PhoneLine, PortalUser
from incidents.models import Incident, IncidentUpdate
from intake.models import Call
from tickets.models import Ticket, TicketMessage


class BusinessFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Business

    name = factory.Sequence(lambda n: f"Business {n}")
    time_zone = "America/New_York"
    open_days = [0, 1, 2, 3, 4]


class PhoneLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PhoneLine

    business = factory.SubFactory(BusinessFactory)
    number = factory.Sequence(lambda n: f"+1212555{n % 10000:04d}")


class OnCallContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OnCallContact

    business = factory.SubFactory(BusinessFactory)
    name = "On-call tech"
    phone = factory.Sequence(lambda n: f"+1646555{n % 10000:04d}")
    email = factory.Sequence(lambda n: f"oncall{n}@business.example")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class PortalUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PortalUser

    user = factory.SubFactory(UserFactory)
    business = factory.SubFactory(BusinessFactory)


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    business = factory.SubFactory(BusinessFactory)
    requester_email = "someone@business.example"
    subject = factory.Sequence(lambda n: f"Problem {n}")
    received_at = factory.LazyFunction(timezone.now)


class TicketMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TicketMessage

    ticket = factory.SubFactory(TicketFactory)
    direction = TicketMessage.Direction.INBOUND
    body = "Hello"
    created_at = factory.LazyFunction(timezone.now)


class CallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Call

    provider_call_id = factory.Sequence(lambda n: f"CA{n:032x}")
    business = factory.SubFactory(BusinessFactory)
    dialled_number = "+12125550191"
    caller_number = "+12125550100"
    status = Call.Status.COMPLETED


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    title = "SMS delayed"
    priority = "P1"
    opened_at = factory.LazyFunction(timezone.now)


class IncidentUpdateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IncidentUpdate

    incident = factory.SubFactory(IncidentFactory)
    status = Incident.Status.INVESTIGATING
    body = "We're investigating."
    created_at = factory.LazyFunction(timezone.now)
