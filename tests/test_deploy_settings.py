"""Production settings behind an HTTPS proxy: `check --deploy` is clean, and the Content
Security Policy allows no inline code (issue 7 #10)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from config.middleware import ForwardedClientAddressMiddleware

ROOT = Path(__file__).resolve().parents[1]


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PADDOCK_", "DJANGO_", "SECURE_")) and k != "DEBUG"
    }
    clean.update(
        {
            "DEBUG": "false",
            "PADDOCK_TESTING": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "panel.example.com",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_behind_an_https_proxy():
    result = check_deploy(PADDOCK_BEHIND_HTTPS_PROXY="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNING" not in result.stderr and "security." not in result.stderr


def test_check_deploy_warns_without_the_proxy_setting():
    # the setting is what makes it clean: without it, HSTS and the redirect are missing
    result = check_deploy()
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.django_db
def test_every_page_carries_a_policy_without_inline_code(client, owner):
    client.force_login(owner)
    for path in ("/", "/login/", "/admin/login/", "/api/docs/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


@pytest.mark.parametrize(
    "enabled, forwarded, expected",
    [
        (True, "198.51.100.7", "198.51.100.7"),
        # only the address the proxy appended counts; what the client claimed does not
        (True, "10.9.9.9, 198.51.100.7", "198.51.100.7"),
        (True, "not-an-address", "192.0.2.1"),
        (False, "198.51.100.7", "192.0.2.1"),
    ],
)
def test_client_address_comes_from_the_proxy_only_when_behind_it(
    settings, enabled, forwarded, expected
):
    settings.BEHIND_HTTPS_PROXY = enabled
    seen = {}

    def view(request):
        seen["ip"] = request.META["REMOTE_ADDR"]
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=forwarded)
    ForwardedClientAddressMiddleware(view)(request)
    assert seen["ip"] == expected
