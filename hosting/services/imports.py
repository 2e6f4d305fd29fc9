"""Import of an OpenVZ container into a new LXC container server.

What comes in: the container's private area as a tar (plain or gzip; its contents at the
root of the tar, as vzdump and `tar -C /vz/private/<veid> -c .` write it) and its ve.conf.
What comes out: a server of the chosen customer and plan (create_server: placement,
addresses, the PROVISION job), with the ve.conf's hostname and, when it is free in an IP
pool of the chosen host, its address; and a report (hosting/openvz.py) of what each
parameter became, what differs from the plan (a server's resources are its plan's) and what
could not be mapped. The report is kept in the job's params ("import_report") and in the
audit event `server.import`.

The archive is copied into IMPORT_STAGING; the PROVISION job's params name it
("rootfs_archive"), and the provision runner makes it the container's root file system
(backend.replace_disk) before provisioning. The staged copy is removed when the server is
provisioned, or when it is terminated (a failed provisioning keeps it for a retry).
"""

from __future__ import annotations

import os
import shutil
import struct
import tarfile
import uuid as uuid_lib
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction

from .. import openvz
from ..access import Caller
from ..choices import JobKind, VirtKind
from ..models import Customer, Host, Image, Job, Plan, Server
from ..permissions import caller_may, is_staff_session
from . import audit
from .errors import NotPermitted, ServiceError
from .servers import create_server

GIB = 1024**3
CHUNK = 1024 * 1024


def staging_dir() -> Path:
    return Path(settings.IMPORT_STAGING)


def _may_import(caller: Caller) -> bool:
    staff = caller.is_system or is_staff_session(caller.user, caller.token)
    return staff and caller_may(caller, JobKind.PROVISION)


def default_image() -> Image:
    image = Image.objects.filter(kind=VirtKind.CONTAINER, is_active=True).order_by("name").first()
    if image is None:
        raise ServiceError("There is no active container image to import with.", field="image")
    return image


def stage_archive(source: Path | IO[bytes]) -> Path:
    """A copy of the archive in IMPORT_STAGING (streamed), named for no one to guess."""
    directory = staging_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"openvz-{uuid_lib.uuid4().hex}.tar"
    try:
        with open(target, "xb") as out:
            if isinstance(source, Path):
                with open(source, "rb") as fh:
                    shutil.copyfileobj(fh, out, CHUNK)
            else:
                shutil.copyfileobj(source, out, CHUNK)
    except OSError as exc:
        target.unlink(missing_ok=True)
        message = f"Cannot copy the archive: {exc.strerror or exc}"
        raise ServiceError(message, field="archive") from exc
    return target


def discard_staged(path: str | os.PathLike[str] | None) -> bool:
    """Remove a staged archive (only ever a file inside IMPORT_STAGING)."""
    if not path:
        return False
    staged = Path(path).resolve()
    if staged.parent != staging_dir().resolve():
        return False
    try:
        staged.unlink()
    except FileNotFoundError:
        return False
    return True


def discard_staged_of(server: Server) -> int:
    """Remove what imports of this server staged (when it is terminated)."""
    removed = 0
    for params in Job.objects.filter(server=server, kind=JobKind.PROVISION).values_list(
        "params", flat=True
    ):
        if isinstance(params, dict) and discard_staged(params.get("rootfs_archive")):
            removed += 1
    return removed


def used_bytes_at_least(path: Path) -> int:
    """What the archive's files take at least, read cheaply: a plain tar's size, or a
    gzip's recorded size (ISIZE: the size modulo 4 GiB, so a lower bound). It must be a
    tar: its first member is read (refused otherwise)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            if tar.next() is None:
                raise ServiceError("The archive is an empty tar.", field="archive")
    except (tarfile.TarError, OSError, EOFError) as exc:
        message = f"The archive is not a tar (plain or gzip): {exc}"
        raise ServiceError(message, field="archive") from exc
    with open(path, "rb") as fh:
        magic = fh.read(2)
        if magic != b"\x1f\x8b":
            return path.stat().st_size
        fh.seek(-4, os.SEEK_END)
        return int(struct.unpack("<I", fh.read(4))[0])


def _check_archive_fits(path: Path, plan: Plan) -> int:
    used = used_bytes_at_least(path)
    if used > plan.disk_gib * GIB:
        raise ServiceError(
            f"The archive holds at least {used / GIB:.1f} GiB: more than plan {plan.name}'s "
            f"{plan.disk_gib} GiB disk.",
            field="plan",
        )
    return used


def read_ve_conf(ve_conf: str) -> openvz.OpenVZSettings:
    try:
        return openvz.read_settings(openvz.parse_ve_conf(ve_conf))
    except openvz.OpenVZConfigError as exc:
        raise ServiceError(f"ve.conf: {exc}", field="ve_conf") from exc


def import_openvz(
    *,
    archive: Path | IO[bytes],
    ve_conf: str,
    customer: Customer,
    plan: Plan,
    caller: Caller,
    image: Image | None = None,
    host: Host | None = None,
    hostname: str | None = None,
) -> tuple[Server, Job, list[dict[str, Any]]]:
    """A new container server from an OpenVZ private area (a tar: a path, or an open file
    such as an upload) and its ve.conf; returns it, its PROVISION job and the report (a
    list of {parameter, openvz, paddock, note, mapped})."""
    if not _may_import(caller):
        raise NotPermitted("Only staff with the permission to add servers may import them.")
    if plan.kind != VirtKind.CONTAINER:
        raise ServiceError(f"Plan {plan.name} is not a container plan.", field="plan")
    if host is not None and host.kind != VirtKind.CONTAINER:
        raise ServiceError(f"Host {host.name} is not a container host.", field="host")
    got = read_ve_conf(ve_conf)
    name = (hostname or got.hostname).strip()
    if not name:
        raise ServiceError("The ve.conf has no HOSTNAME: give one.", field="hostname")
    image = image or default_image()
    if image.kind != VirtKind.CONTAINER:
        raise ServiceError(f"Image {image.name} is not a container image.", field="image")

    if isinstance(archive, Path):  # refused before it is copied
        used = _check_archive_fits(archive, plan)
    staged = stage_archive(archive)
    try:
        if not isinstance(archive, Path):
            used = _check_archive_fits(staged, plan)
        lines = openvz.import_report(got, plan, hostname=name)
        with transaction.atomic():
            server, job = create_server(
                customer=customer,
                plan=plan,
                image=image,
                hostname=name,
                caller=caller,
                host=host,
                addresses=got.addresses,
                job_params={"rootfs_archive": str(staged)},
            )
            assigned = [str(a.address) for a in server.addresses.order_by("pool__family")]
            lines.insert(1 if lines and lines[0].parameter == "HOSTNAME" else 0,
                         openvz.address_line(got, assigned))  # fmt: skip
            report = [line.as_dict() for line in lines]
            job.params = {**job.params, "import_report": report}
            job.save(update_fields=["params"])
            audit.record(
                action="server.import",
                caller=caller,
                target=server,
                details={
                    "job": job.pk,
                    "plan": plan.name,
                    "image": image.name,
                    "hostname": name,
                    "addresses": assigned,
                    "archive_bytes_at_least": used,
                    "ostemplate": got.ostemplate,
                    "not_mapped": openvz.not_mapped(lines),
                    "changed": [
                        line.parameter
                        for line in lines
                        if line.mapped and line.note and line.note not in ("the same", "kept")
                    ],
                },
            )
    except BaseException:
        discard_staged(staged)
        raise
    return server, job, report
