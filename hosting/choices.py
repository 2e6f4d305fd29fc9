"""Every enumerated value of the domain, in one place."""

from django.db import models


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class MemberRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class VirtKind(models.TextChoices):
    VM = "vm", "Virtual machine"
    CONTAINER = "container", "Container"


class BackendKind(models.TextChoices):
    LIBVIRT = "libvirt", "libvirt (KVM/QEMU, test driver)"
    LXC = "lxc", "LXC (system containers)"


class VirtType(models.TextChoices):
    """How a host runs guests: hardware virtualization or software emulation."""

    AUTO = "auto", "Detected (KVM where the host offers it, TCG otherwise)"
    KVM = "kvm", "KVM (hardware virtualization)"
    QEMU = "qemu", "QEMU TCG (software emulation)"


class HostState(models.TextChoices):
    ONLINE = "online", "Online"
    MAINTENANCE = "maintenance", "Maintenance"
    OFFLINE = "offline", "Offline"


class PlacementPolicy(models.TextChoices):
    """How the placement engine picks among the hosts that fit (per zone)."""

    SPREAD = "spread", "Spread (the host with the most free room)"
    PACK = "pack", "Pack (the fullest host that still fits)"


class BalanceMode(models.TextChoices):
    """What the balancer does in a zone (hosting/services/balancer.py)."""

    OFF = "off", "Off"
    ADVISE = "advise", "Advise (plans wait for approval in the admin)"
    APPLY = "apply", "Apply (migrations are requested at once)"


class BalancePlanStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed (waiting for approval)"
    APPLIED = "applied", "Applied (migrations requested)"
    REJECTED = "rejected", "Rejected"
    SUPERSEDED = "superseded", "Superseded by a newer plan"


class GroupRule(models.TextChoices):
    AFFINITY = "affinity", "Affinity (same host)"
    ANTI_AFFINITY = "anti-affinity", "Anti-affinity (different hosts)"


class DiskMode(models.TextChoices):
    OVERLAY = "overlay", "qcow2 overlay on the base image"
    COPY = "copy", "Full copy of the base image"


class ImageFormat(models.TextChoices):
    QCOW2 = "qcow2", "qcow2"
    RAW = "raw", "raw"
    TAR = "tar", "tar (a container's root file system, gzip or plain)"


class OSFamily(models.TextChoices):
    LINUX = "linux", "Linux"
    BSD = "bsd", "BSD"
    WINDOWS = "windows", "Windows"


class ServerState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    PAUSED = "paused", "Paused"
    ERROR = "error", "Error"
    UNKNOWN = "unknown", "Unknown (host unreachable)"
    MIGRATING = "migrating", "Migrating"
    TERMINATING = "terminating", "Terminating"
    TERMINATED = "terminated", "Terminated"


class IPFamily(models.IntegerChoices):
    IPV4 = 4, "IPv4"
    IPV6 = 6, "IPv6"


class TransferPolicy(models.TextChoices):
    """What happens to a server past its plan's monthly transfer allowance."""

    NOTIFY = "notify", "Tell the customer only"
    THROTTLE = "throttle", "Throttle its network interfaces"
    SUSPEND = "suspend", "Suspend the server"


class JobKind(models.TextChoices):
    PROVISION = "provision", "Provision"
    START = "start", "Start"
    STOP = "stop", "Stop (graceful)"
    FORCE_STOP = "force_stop", "Force stop"
    REBOOT = "reboot", "Reboot"
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    SUSPEND = "suspend", "Suspend"
    UNSUSPEND = "unsuspend", "Unsuspend"
    TERMINATE = "terminate", "Terminate"
    MIGRATE = "migrate", "Migrate"
    HOST_REFRESH = "host_refresh", "Refresh host"
    SNAPSHOT_CREATE = "snapshot_create", "Take snapshot"
    SNAPSHOT_REVERT = "snapshot_revert", "Revert to snapshot"
    SNAPSHOT_DELETE = "snapshot_delete", "Delete snapshot"
    BACKUP = "backup", "Back up"
    BACKUP_VERIFY = "backup_verify", "Verify backup"
    BACKUP_RESTORE = "backup_restore", "Restore backup"
    EVACUATE = "evacuate", "Evacuate host"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TokenScope(models.TextChoices):
    BILLING = "billing", "Billing (acts for every customer)"
    CUSTOMER = "customer", "Customer (its own customer only)"
    READ = "read", "Read only"


class SnapshotStatus(models.TextChoices):
    CREATING = "creating", "Being taken"
    READY = "ready", "Ready"
    REVERTING = "reverting", "Reverting"
    DELETING = "deleting", "Being deleted"
    ERROR = "error", "Error"


class BackupKind(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental"


class BackupStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class Consistency(models.TextChoices):
    FROZEN = "frozen", "Filesystems frozen (guest agent)"
    CRASH = "crash-consistent", "Crash-consistent"


class BackupFrequency(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
