"""Development tooling lives in the devtools app, which production settings leave out.

Production is run in a separate interpreter (the settings are read once per process):
DEBUG off, PADDOCK_DEV_TOOLS off as docker-compose.yml sets it, and a var/ directory that
does not exist, so that any directory the settings or a runtime module made would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
DEV_COMMANDS = {"runstack", "seed_demo", "testbed", "embedded_redis"}
RUNTIME_PACKAGES = ("config", "hosting", "dashboard", "workers")

PROBE = """
import importlib, json, pkgutil, sys
import django
django.setup()
from django.apps import apps
from django.core.management import get_commands
from django.conf import settings

failed = {}
for name in %(packages)r:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, prefix=name + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # reported, not hidden
            failed[info.name] = repr(exc)
print(json.dumps({
    "devtools_installed": apps.is_installed("devtools"),
    "commands": sorted(set(get_commands()) & %(commands)r),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("testbed", "devtools")),
    "failed": failed,
    "var_dir": str(settings.VAR_DIR),
}))
"""


def production(tmp_path: Path, **extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PADDOCK_", "PYTEST_", "DEMO_")) and key != "DEBUG"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "PADDOCK_TESTING": "false",
            "PADDOCK_DEV_TOOLS": "false",
            "SECRET_KEY": "a-production-secret-for-this-test-only",
            "PADDOCK_VAR_DIR": str(tmp_path / "var"),
            **extra,
        }
    )
    code = PROBE % {"packages": RUNTIME_PACKAGES, "commands": DEV_COMMANDS}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_settings_leave_the_development_app_out(tmp_path):
    # given production settings; when the settings and every runtime module are imported
    found = production(tmp_path)
    # then the development app and its commands are absent, nothing imported the testbed
    # or the development app, and no directory was created
    assert found["failed"] == {}
    assert found["devtools_installed"] is False
    assert found["commands"] == []
    assert found["imported"] == []
    assert found["var_dir"] == str(tmp_path / "var")
    assert list(tmp_path.iterdir()) == []


def test_the_flag_installs_the_development_app(tmp_path):
    found = production(tmp_path, PADDOCK_DEV_TOOLS="true")
    assert found["devtools_installed"] is True
    assert found["commands"] == sorted(DEV_COMMANDS)
    assert list(tmp_path.iterdir()) == []


def test_the_test_run_has_the_development_app():
    assert apps.is_installed("devtools")
    assert set(get_commands()) >= DEV_COMMANDS


@pytest.mark.parametrize("package", RUNTIME_PACKAGES)
def test_runtime_code_names_neither_the_testbed_nor_the_development_app(package):
    """The source itself, also for imports inside functions that the probe above would not
    execute."""
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            imports = words[:1] in (["import"], ["from"]) and len(words) > 1
            if imports and words[1].split(".")[0] in ("testbed", "devtools"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
