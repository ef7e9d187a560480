from django.urls import path

from . import portal

urlpatterns = [
    path("", portal.portal_home, name="portal-home"),
    path("tickets/<str:reference>/", portal.portal_ticket, name="portal-ticket"),
]
