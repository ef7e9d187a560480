"""Sign-in forms that pause password guessing (accounts.sign_in_throttle).

The portal's sign-in and the admin's share the counters: a guesser gains
nothing by moving from one page to the other.
"""

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpResponse

from .sign_in_throttle import (
    sign_in_attempt,
    sign_in_failed,
    sign_in_paused_message,
    sign_in_succeeded,
    sign_in_wait,
)

PAUSED = "paused"


class PausingSignInMixin:
    """Refuses a paused sign-in before the password is tried; counts failures."""

    retry_after: float = 0.0

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if not username or not password:
            return super().clean()

        attempt = sign_in_attempt(request=self.request, username=username)
        wait = sign_in_wait(attempt)
        if wait > 0:
            self.retry_after = wait
            raise forms.ValidationError(sign_in_paused_message(wait), code=PAUSED)

        try:
            cleaned = super().clean()
        except forms.ValidationError:
            # The admin refuses a non-staff login whose password was right:
            # no guess, nothing to count.
            if self.user_cache is None:
                sign_in_failed(attempt)
            raise
        sign_in_succeeded(attempt)
        return cleaned


class PausingAuthenticationForm(PausingSignInMixin, AuthenticationForm):
    pass


class PausingAdminAuthenticationForm(PausingSignInMixin, AdminAuthenticationForm):
    pass


def answer_paused(response: HttpResponse, form) -> HttpResponse:
    """429 with Retry-After when the sign-in page refused a paused attempt."""
    if form is not None and form.has_error(NON_FIELD_ERRORS, PAUSED):
        response.status_code = 429
        response["Retry-After"] = str(max(1, math.ceil(form.retry_after)))
    return response
