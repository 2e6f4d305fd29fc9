"""`manage.py import_openvz --archive PATH --ve-conf PATH --customer C --plan P`: import an
OpenVZ container (its private area as a tar, and its ve.conf) into a new LXC container
server (hosting/services/imports.py); prints the report and the provisioning job."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hosting import openvz
from hosting.access import Caller
from hosting.models import Customer, Host, Image, Plan
from hosting.services.errors import ServiceError
from hosting.services.imports import import_openvz


def _one(model, label: str, value: str, field: str = "name"):
    query = {"pk": int(value)} if value.isdigit() else {field: value}
    found = model.objects.filter(**query).first()
    if found is None:
        raise CommandError(f"No {label} {value!r}.")
    return found


class Command(BaseCommand):
    help = (
        "Import an OpenVZ container: its private area as a tar (plain or gzip, the files at "
        "the root of the tar) and its ve.conf, into a new container server of CUSTOMER on "
        "PLAN. Prints what each ve.conf parameter became and the provisioning job's id."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--archive", required=True, type=Path, help="The private area (tar).")
        parser.add_argument("--ve-conf", required=True, type=Path, help="The container's ve.conf.")
        parser.add_argument("--customer", required=True, help="Customer id or name.")
        parser.add_argument("--plan", required=True, help="Plan name (or id); a container plan.")
        parser.add_argument("--image", help="Image name (default: the first container image).")
        parser.add_argument("--host", help="Host name (default: placement chooses).")
        parser.add_argument("--hostname", help="Hostname (default: the ve.conf's HOSTNAME).")

    def handle(self, *args, **options) -> None:
        archive: Path = options["archive"]
        if not archive.is_file():
            raise CommandError(f"No archive at {archive}.")
        try:
            ve_conf = options["ve_conf"].read_text(errors="replace")
        except OSError as exc:
            raise CommandError(f"Cannot read {options['ve_conf']}: {exc.strerror}") from exc
        customer = _one(Customer, "customer", options["customer"])
        plan = _one(Plan, "plan", options["plan"])
        image = _one(Image, "image", options["image"]) if options["image"] else None
        host = _one(Host, "host", options["host"]) if options["host"] else None
        try:
            server, job, report = import_openvz(
                archive=archive,
                ve_conf=ve_conf,
                customer=customer,
                plan=plan,
                image=image,
                host=host,
                hostname=options["hostname"],
                caller=Caller.system(),
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        lines = [openvz.ReportLine(**line) for line in report]
        self.stdout.write(openvz.format_table(lines))
        missing = openvz.not_mapped(lines)
        self.stdout.write("")
        self.stdout.write(f"Not mapped: {', '.join(missing) if missing else 'nothing'}")
        self.stdout.write(
            f"Server {server.hostname} ({server.uuid}) on {server.host}: "
            f"provisioning job {job.pk} queued."
        )
