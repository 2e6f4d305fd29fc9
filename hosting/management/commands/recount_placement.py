"""Rebuild every host's usage counters (placement) from the servers it holds."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from hosting.services.placement import recount


class Command(BaseCommand):
    help = (
        "Rebuild the hosts' usage counters (vCPU, memory, disk, servers) that placement "
        "reads from the servers placed on or moving to each host; lists the hosts fixed."
    )

    def handle(self, *args, **options) -> None:
        fixed = recount()
        if fixed:
            self.stdout.write(f"Fixed the counters of {len(fixed)} host(s): {', '.join(fixed)}")
        else:
            self.stdout.write("Every host's counters match its servers.")
