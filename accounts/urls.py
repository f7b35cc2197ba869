from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from accounts import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/auth/guest-login", views.GuestLoginView.as_view(), name="auth-guest-login"),
    path("v1/auth/google/login", views.GoogleLoginView.as_view(), name="auth-google-login"),
    path("v1/auth/google/callback", views.GoogleCallbackView.as_view(), name="auth-google-callback"),
    path(
        "v1/auth/google/testcallback",
        views.GoogleTestCallbackView.as_view(),
        name="auth-google-testcallback",
    ),
    path("v1/auth/refresh-token", views.RefreshTokenView.as_view(), name="auth-refresh-token"),
    path("v1/auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("v1/auth/me", views.MeView.as_view(), name="auth-me"),
]
