from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "intake"

    def ready(self):
        from anymail.signals import inbound

        from .receivers import inbound_email_received

        inbound.connect(inbound_email_received, dispatch_uid="intake.inbound_email")
