"""Sign-in pages for portal logins, in our own layout."""

from django.conf import settings
from django.contrib.auth import views as auth_views

from .forms import PausingAuthenticationForm, answer_paused


class SignInView(auth_views.LoginView):
    """Django's sign-in, telling a customer who forgot the password whom to ask.

    Repeated failures pause sign-in for the login name or the address
    (accounts.sign_in_throttle); a paused attempt gets 429.
    """

    form_class = PausingAuthenticationForm

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "support_email": settings.SUPPORT_EMAIL,
        }

    def form_invalid(self, form):
        return answer_paused(super().form_invalid(form), form)
