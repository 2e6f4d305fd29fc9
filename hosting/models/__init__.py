from .audit import AuditEvent
from .backups import Backup, BackupPolicy, Snapshot
from .balance import BalancePlan
from .catalog import Image, Plan
from .customers import Customer, Membership, SSHKey
from .hosts import Host, Zone
from .jobs import Job
from .network import IPAddress, IPPool
from .servers import PlacementGroup, Server
from .stats import ServerStatsHour, ServerStatsMinute, TransferQuota
from .tokens import APIToken

__all__ = [
    "APIToken",
    "AuditEvent",
    "Backup",
    "BackupPolicy",
    "BalancePlan",
    "Customer",
    "Host",
    "IPAddress",
    "IPPool",
    "Image",
    "Job",
    "Membership",
    "PlacementGroup",
    "Plan",
    "SSHKey",
    "Server",
    "ServerStatsHour",
    "ServerStatsMinute",
    "Snapshot",
    "TransferQuota",
    "Zone",
]
