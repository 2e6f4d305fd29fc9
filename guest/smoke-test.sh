#!/bin/bash
# Smoke test of the tiny guest image under plain QEMU (TCG, SeaBIOS, no -kernel):
#   guest/smoke-test.sh [IMAGE]        (default: builds var/images/paddock-tiny.qcow2)
#
# boot 1  seed on an IDE CD-ROM: ready line with the seed's hostname and address, heartbeat
#         advances; then qemu is killed (SIGKILL, no shutdown)
# boot 2  seed on a virtio disk: the counter continues from where boot 1 left it; an ACPI
#         power button press (system_powerdown) shuts the guest down cleanly
# boot 3  seed on a virtio-scsi CD-ROM; system_reset: the guest boots again and the counter
#         still continues; power down
# Finally the data partition of the overlay is read on the host (debugfs): heartbeat and
# authorized_keys.
#
# Environment: SEED_TOOL=python (default, guest/nocloud_seed.py) or genisoimage;
# KEEP=1 keeps the work directory (var/guest-smoke/).
set -euo pipefail
export LC_ALL=C

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$GUEST_DIR/.." && pwd)
IMAGE=${1:-}
SEED_TOOL=${SEED_TOOL:-python}
WORK=$ROOT/var/guest-smoke
HOSTNAME_=smoke-$$
MAC=52:54:00:5a:11:$(printf '%02x' $(( $$ % 256 )))
ADDRESS=10.0.2.15/24  # what QEMU's user network expects; gateway 10.0.2.2
GATEWAY=10.0.2.2
KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPaddockSmokeTestKeyOnly smoke@paddock"
READY_TIMEOUT=${READY_TIMEOUT:-120}

log() { echo "smoke-test: $*" >&2; }
fail() { log "FAIL: $*"; [ -f "$WORK/console.log" ] && tail -n 40 "$WORK/console.log" | tr -d '\r' >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed"
if [ -z "$IMAGE" ]; then
    bash "$GUEST_DIR/build-image.sh" >&2
    IMAGE=$ROOT/var/images/paddock-tiny.qcow2
fi
IMAGE=$(realpath "$IMAGE")

QEMU_PID=
cleanup() {
    [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK/seed"

# --- the seed -------------------------------------------------------------------------------
python3 "$GUEST_DIR/nocloud_seed.py" "$WORK/seed.iso" --dir "$WORK/seed" \
    --hostname "$HOSTNAME_" --instance-id "i-$$" --mac "$MAC" --address "$ADDRESS" \
    --gateway "$GATEWAY" --nameserver 10.0.2.3 --ssh-key "$KEY"
if [ "$SEED_TOOL" = genisoimage ]; then
    (cd "$WORK/seed" && genisoimage -quiet -o "$WORK/seed.iso" -V cidata -J -r meta-data user-data network-config)
fi
log "seed ($SEED_TOOL): $(stat -c %s "$WORK/seed.iso") bytes, hostname=$HOSTNAME_ mac=$MAC ip=$ADDRESS"

qemu-img create -q -f qcow2 -b "$IMAGE" -F qcow2 "$WORK/disk.qcow2" 2G

# --- helpers ------------------------------------------------------------------------------------
CONSOLE=$WORK/console.log
start_qemu() {  # seed bus: ide | virtio | scsi
    local seed
    case $1 in
        ide) seed=(-drive "file=$WORK/seed.iso,if=ide,index=2,media=cdrom,format=raw,readonly=on") ;;
        virtio) seed=(-drive "file=$WORK/seed.iso,if=virtio,format=raw,readonly=on") ;;
        scsi) seed=(-device virtio-scsi-pci,id=scsi0
            -drive "file=$WORK/seed.iso,if=none,id=seed,media=cdrom,format=raw,readonly=on"
            -device scsi-cd,drive=seed,bus=scsi0.0) ;;
    esac
    rm -f "$WORK/mon.in" "$WORK/mon.out" "$CONSOLE"
    mkfifo "$WORK/mon.in" "$WORK/mon.out"
    : > "$CONSOLE"
    qemu-system-x86_64 -machine pc,accel=tcg -m 256 -smp 1 -display none -no-user-config \
        -serial "file:$CONSOLE" -monitor "pipe:$WORK/mon" \
        -drive "file=$WORK/disk.qcow2,if=virtio,format=qcow2" "${seed[@]}" \
        -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$MAC" \
        </dev/null >"$WORK/qemu.out" 2>&1 &
    QEMU_PID=$!
    # drain the monitor's output so it never blocks
    cat "$WORK/mon.out" >/dev/null &
    BOOT_T0=$(now)
}
monitor() { echo "$1" > "$WORK/mon.in"; }
console() { tr -d '\r' < "$CONSOLE"; }
wait_for() {  # extended regexp [timeout] [occurrence]: wait until a console line matches
    local re=$1 timeout=${2:-$READY_TIMEOUT} nth=${3:-1} t0
    t0=$(now)
    while :; do
        [ "$(console | grep -cE "$re")" -ge "$nth" ] && return 0
        kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited while waiting for /$re/"
        awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN {exit !(b - a > t)}' &&
            fail "timed out after ${timeout}s waiting for /$re/"
        sleep 0.2
    done
}
heartbeats() { console | sed -n 's/^paddock-guest heartbeat=\([0-9]*\)$/\1/p'; }
wait_exit() {  # seconds
    local i=0
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le $(( $1 * 5 )) ] || fail "qemu still running ${1}s after the power button"
        sleep 0.2
    done
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
}
READY_RE="^paddock-guest hostname=$HOSTNAME_ ip=${ADDRESS%/*} ready$"

# --- boot 1: IDE CD-ROM seed, then SIGKILL ------------------------------------------------------
start_qemu ide
wait_for "$READY_RE"
READY1=$(since "$BOOT_T0")
log "boot 1 (seed on IDE cdrom): ready in ${READY1}s"
wait_for '^paddock-guest heartbeat=10$' 30
sleep 2
LAST1=$(heartbeats | tail -n 1)
log "boot 1: heartbeat reached $LAST1 (+2 s), killing qemu"
kill -9 "$QEMU_PID"
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
cp "$CONSOLE" "$WORK/console.boot1.log"

# --- boot 2: virtio disk seed, counter continues, ACPI power button -------------------------------
start_qemu virtio
wait_for "$READY_RE"
READY2=$(since "$BOOT_T0")
wait_for '^paddock-guest heartbeat=[0-9]+$'
FIRST2=$(heartbeats | head -n 1)
log "boot 2 (seed on virtio disk): ready in ${READY2}s, heartbeat resumed at $FIRST2"
[ "$FIRST2" -ge $(( LAST1 + 1 )) ] || fail "heartbeat went back: boot 1 reached $LAST1, boot 2 starts at $FIRST2"
console | grep -q '^paddock-guest gateway=10.0.2.2 reachable$' ||
    wait_for '^paddock-guest gateway=10.0.2.2 reachable$' 15
sleep 3
T=$(now)
monitor system_powerdown
wait_for '^paddock-guest poweroff requested$' 10
wait_exit 20
log "boot 2: ACPI power button -> powered off in $(since "$T")s"
cp "$CONSOLE" "$WORK/console.boot2.log"

# --- boot 3: virtio-scsi CD-ROM seed; a hard reset comes back and continues -------------------------
start_qemu scsi
wait_for "$READY_RE"
READY3=$(since "$BOOT_T0")
wait_for '^paddock-guest heartbeat=[0-9]+$'
FIRST3=$(heartbeats | head -n 1)
[ "$FIRST3" -gt "$FIRST2" ] || fail "heartbeat went back after a clean shutdown: $FIRST2 -> $FIRST3"
sleep 3
monitor system_reset
wait_for "$READY_RE" "$READY_TIMEOUT" 2
wait_for '^paddock-guest heartbeat=[0-9]+$' 30 2
AFTER_RESET=$(heartbeats | sed -n 2p)
[ "$AFTER_RESET" -gt "$FIRST3" ] || fail "heartbeat went back after a reset: $FIRST3 -> $AFTER_RESET"
log "boot 3 (seed on virtio-scsi cdrom): ready in ${READY3}s, resumed at $FIRST3, after system_reset at $AFTER_RESET"
monitor system_powerdown
wait_exit 20
cp "$CONSOLE" "$WORK/console.boot3.log"

# --- the data partition, read on the host -----------------------------------------------------------
if command -v debugfs >/dev/null || [ -x /sbin/debugfs ]; then
    DEBUGFS=$(command -v debugfs || echo /sbin/debugfs)
    qemu-img convert -f qcow2 -O raw "$WORK/disk.qcow2" "$WORK/disk.raw"
    START=$(od -An -tu4 -j 470 -N 4 "$WORK/disk.raw" | tr -d ' ')  # partition 2's first LBA
    dd if="$WORK/disk.raw" of="$WORK/data.ext4" bs=512 skip="$START" status=none
    STORED=$("$DEBUGFS" -R 'cat /paddock/heartbeat' "$WORK/data.ext4" 2>/dev/null)
    KEYS=$("$DEBUGFS" -R 'cat /root/.ssh/authorized_keys' "$WORK/data.ext4" 2>/dev/null)
    [ "$KEYS" = "$KEY" ] || fail "authorized_keys on the data partition: '$KEYS'"
    [ "$STORED" -ge "$AFTER_RESET" ] || fail "stored heartbeat $STORED < $AFTER_RESET"
    log "data partition: heartbeat=$STORED, authorized_keys ok"
fi

log "PASS (boot to ready under TCG: ${READY2}s seed on virtio disk, ${READY1}s IDE cdrom, ${READY3}s virtio-scsi cdrom)"
