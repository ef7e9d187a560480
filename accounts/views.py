"""Sign-in pages for portal logins, in our own layout."""

from django.conf import settings
from django.contrib.auth import views as auth_views


class SignInView(auth_views.LoginView):
    """Django's sign-in, telling a customer who forgot the password whom to ask."""

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "support_email": settings.SUPPORT_EMAIL,
        }
