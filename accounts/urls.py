"""Sign in, sign out and password change for portal logins.

Django's password reset routes are left out on purpose: its pages carried
the admin's branding and its email is sent from the web request, outside
the outbox (no retry, no record). Portal logins are set up by support, so
a customer who forgot the password asks support (the sign-in page says
how).
"""

from django.contrib.auth import views as auth_views
from django.urls import path

from .views import SignInView

urlpatterns = [
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Template names of our own: the admin's password change keeps Django's.
    path(
        "password_change/",
        auth_views.PasswordChangeView.as_view(
            template_name="registration/change_password.html"
        ),
        name="password_change",
    ),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="registration/change_password_done.html"
        ),
        name="password_change_done",
    ),
]
