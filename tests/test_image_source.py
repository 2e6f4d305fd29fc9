"""An image's source is a regular file inside the image store: checked on save (model,
API, admin) and again by the worker at provisioning (issue 7 #5)."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from hosting.backends import ImageNotAvailable
from hosting.imagestore import source_path
from hosting.models import Image

from .factories import ImageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(settings, tmp_path):
    """An image store with one good file, a link, a FIFO and a directory in it, and a
    secret file beside it."""
    root = tmp_path / "images"
    (root / "linux").mkdir(parents=True)
    (root / "linux" / "debian.qcow2").write_bytes(b"QFI\xfb")
    (root / "debian.qcow2").write_bytes(b"QFI\xfb")
    (tmp_path / "secret").write_text("not an image")
    (root / "to-secret.qcow2").symlink_to(tmp_path / "secret")
    (root / "zero.raw").symlink_to("/dev/zero")
    (root / "dir-link").symlink_to(root / "linux")
    os.mkfifo(root / "fifo.raw")
    settings.IMAGE_STORE = str(root)
    return root


BAD_SOURCES = [
    "../secret",
    "linux/../../secret",
    "/dev/zero",
    "/etc/passwd",
    "to-secret.qcow2",
    "zero.raw",
    "dir-link/debian.qcow2",
    "fifo.raw",
    "linux",
    "missing.qcow2",
    "bad\x00name",
]


def image_with(source: str) -> Image:
    return Image(name="img", volume_name="img.qcow2", source=source)


@pytest.mark.parametrize("source", ["debian.qcow2", "linux/debian.qcow2", ""])
def test_files_in_the_store_are_accepted(store, source):
    image_with(source).full_clean()


def test_absolute_path_inside_the_store_is_accepted(store):
    image_with(str(store / "linux" / "debian.qcow2")).full_clean()


@pytest.mark.parametrize("source", BAD_SOURCES)
def test_sources_outside_the_store_or_not_regular_files_are_refused(store, source):
    with pytest.raises(ValidationError) as excinfo:
        image_with(source).full_clean()
    assert "source" in excinfo.value.message_dict


@pytest.mark.parametrize("source", ["../secret", "/dev/zero", "zero.raw"])
def test_api_refuses_a_bad_source(store, staff, source):
    client = APIClient()
    client.force_login(staff)
    resp = client.post(
        "/api/v1/images/",
        {"name": "evil", "volume_name": "evil.qcow2", "source": source},
        format="json",
    )
    assert resp.status_code == 400
    assert "source" in resp.json()["error"]["fields"]
    assert not Image.objects.filter(name="evil").exists()


def test_worker_checks_again_at_use(store):
    # given an image saved when its file was fine
    image = ImageFactory(source="debian.qcow2")
    assert source_path(image) == str(store / "debian.qcow2")
    # when the file is swapped for a link to a device
    (store / "debian.qcow2").unlink()
    (store / "debian.qcow2").symlink_to("/dev/zero")
    # then the worker refuses it
    with pytest.raises(ImageNotAvailable, match="symbolic link"):
        source_path(image)
    # and a row written past validation is refused too
    Image.objects.filter(pk=image.pk).update(source="/dev/zero")
    image.refresh_from_db()
    with pytest.raises(ImageNotAvailable, match="inside the image store"):
        source_path(image)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_provisioning_refuses_a_source_swapped_for_a_device(
    store, celery_worker, billing_client, customer, plan, host, pool
):
    from .test_provisioning import domain_state, wait_job

    # given an image whose row names /dev/zero (written past validation)
    image = ImageFactory(source="debian.qcow2")
    Image.objects.filter(pk=image.pk).update(source="/dev/zero")
    # when a server is ordered with it
    resp = billing_client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": "web-9"},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    # then the job fails before anything is read, and no domain was defined
    assert job.status == "failed"
    assert "inside the image store" in job.error
    assert domain_state(job.server) is None
