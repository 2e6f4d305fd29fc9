from django.urls import path

from .views import backups, keys, servers, staff, tokens

app_name = "dashboard"

urlpatterns = [
    path("", servers.server_list, name="server-list"),
    path("servers/new/", servers.server_create, name="server-create"),
    path("servers/<uuid:uuid>/", servers.server_detail, name="server-detail"),
    path("servers/<uuid:uuid>/live/", servers.server_live, name="server-live"),
    path(
        "servers/<uuid:uuid>/actions/<slug:action>/",
        servers.server_action,
        name="server-action",
    ),
    path("servers/<uuid:uuid>/snapshots/", backups.snapshot_create, name="server-snapshot-create"),
    path(
        "servers/<uuid:uuid>/snapshots/<str:snapshot>/<slug:action>/",
        backups.snapshot_action,
        name="server-snapshot-action",
    ),
    path("servers/<uuid:uuid>/backups/", backups.backup_create, name="server-backup-create"),
    path("servers/deleted/", backups.deleted_servers, name="deleted-servers"),
    path("backups/<str:backup>/<slug:action>/", backups.backup_action, name="backup-action"),
    path("keys/", keys.key_list, name="key-list"),
    path("keys/<int:pk>/delete/", keys.key_delete, name="key-delete"),
    path("tokens/", tokens.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("ops/", staff.overview, name="ops"),
    path("ops/fleet/", staff.fleet, name="fleet"),
]
