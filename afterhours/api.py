"""Read-only JSON API: tickets, incidents and calls.

Staff see every row; a portal login sees only its own business's rows.
"""

from django.db.models import QuerySet
from rest_framework import routers, serializers, viewsets

from incidents.models import Incident
from intake.models import Call
from tickets.models import Ticket


def _scoped(request, queryset: QuerySet, business_field: str) -> QuerySet:
    if request.user.is_staff:
        return queryset
    portal = getattr(request.user, "portal", None)
    if portal is None:
        return queryset.none()
    return queryset.filter(**{business_field: portal.business_id})


class TicketSerializer(serializers.ModelSerializer):
    business = serializers.StringRelatedField()
    missing_facts = serializers.ListField(read_only=True)

    class Meta:
        model = Ticket
        fields = [
            "reference",
            "business",
            "subject",
            "priority",
            "priority_reasons",
            "escalations",
            "status",
            "component",
            "missing_facts",
            "received_at",
            "acknowledge_due",
            "next_update_due",
            "incident",
        ]


class IncidentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Incident
        fields = [
            "id",
            "title",
            "priority",
            "status",
            "impact",
            "components",
            "opened_at",
            "next_update_due",
            "resolved_at",
        ]


class CallSerializer(serializers.ModelSerializer):
    business = serializers.StringRelatedField()

    class Meta:
        model = Call
        fields = [
            "provider_call_id",
            "business",
            "caller_number",
            "dialled_number",
            "status",
            "started_at",
            "ended_at",
            "duration_seconds",
            "summary",
            "airtable_state",
        ]


class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TicketSerializer
    lookup_field = "reference"

    def get_queryset(self):
        queryset = Ticket.objects.select_related("business").order_by("-received_at")
        return _scoped(self.request, queryset, "business")


class IncidentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = IncidentSerializer

    def get_queryset(self):
        queryset = Incident.objects.order_by("-opened_at")
        return _scoped(self.request, queryset, "affected_businesses").distinct()


class CallViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = CallSerializer
    lookup_field = "provider_call_id"

    def get_queryset(self):
        queryset = Call.objects.select_related("business").order_by("-created_at")
        return _scoped(self.request, queryset, "business")


router = routers.DefaultRouter()
router.register("tickets", TicketViewSet, basename="ticket")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("calls", CallViewSet, basename="call")
