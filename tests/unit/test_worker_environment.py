"""What the zygote, and so every worker, gets of the daemon's environment."""

from __future__ import annotations

from hermesd.zygote import harmless


def test_only_harmless_variables_are_passed_on() -> None:
    environ = {"PATH": "/usr/bin", "PYTHONPATH": "/x", "LANG": "C.UTF-8", "LC_TIME": "C",
               "TZ": "UTC", "https_proxy": "http://proxy:3128", "NO_PROXY": "localhost",
               "DISCORD_TOKEN": "secret", "OPENROUTER_API_KEY": "sk-x",
               "NOTIFY_SOCKET": "/run/systemd/notify", "SSL_CERT_FILE": "/etc/ca.pem"}
    assert sorted(harmless(environ)) == ["LANG", "LC_TIME", "NO_PROXY", "PATH", "SSL_CERT_FILE",
                                         "TZ", "https_proxy"]
