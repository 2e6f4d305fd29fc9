#!/bin/bash
# Build the Paddock tiny guest image: guest/build-image.sh [OUTDIR]  (default var/images)
#
# Output: OUTDIR/paddock-tiny.qcow2 (+ .inputs stamp and .manifest), a bootable MBR disk:
#   partition 1  FAT16, active: syslinux, the Debian cloud kernel, an initramfs holding
#                busybox-static, the guest init (guest/init) and the kernel modules it needs
#   partition 2  ext4 labelled paddock-data: the guest's persistent state (heartbeat, keys)
#
# Everything comes from Debian packages fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`; the tools that write the FAT file system and install syslinux on it are
# run from those unpacked packages too, so nothing is installed on the host except, when
# missing, e2fsprogs (mke2fs) and qemu-utils (qemu-img). No loop device, no mount.
# A second run with unchanged inputs (package versions, these sources) is a no-op.
set -euo pipefail
export LC_ALL=C

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$GUEST_DIR/.." && pwd)
OUTDIR=${1:-$ROOT/var/images}
BUILD=${PADDOCK_GUEST_BUILD:-$ROOT/var/guest-build}
KERNEL_META=${PADDOCK_GUEST_KERNEL:-linux-image-cloud-amd64}
IMAGE=paddock-tiny.qcow2

BOOT_START_MIB=1  # partition 1 starts at 1 MiB (sector 2048)
DATA_MIB=64       # ext4 data partition size
DISK_SIGNATURE=0x50444b31
CMDLINE="console=ttyS0,115200n8 quiet panic=5"

# Modules loaded at every boot (virtio disk and NIC, the ACPI power button as an input
# device, ISO 9660 for the seed), and those loaded only when the seed is not on a virtio
# disk (IDE CD-ROM on the i440fx PIIX controller, or a CD-ROM on a virtio-scsi HBA).
MODULES_STAGE1="virtio_pci virtio_blk virtio_net button evdev isofs"
MODULES_STAGE2="ata_piix sr_mod virtio_scsi"

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || log "warning: not root; apt-get download works, installing missing host tools will not"
mkdir -p "$BUILD/debs" "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

if command -v flock >/dev/null; then
    exec 9>"$BUILD/.lock"
    flock 9
fi

# --- host tools -------------------------------------------------------------------------
need_host_tool() {  # command package
    command -v "$1" >/dev/null && return 0
    PATH=$PATH:/usr/sbin:/sbin command -v "$1" >/dev/null && return 0
    log "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2 || die "cannot install $2"
}
export PATH=$PATH:/usr/sbin:/sbin
need_host_tool mke2fs e2fsprogs
need_host_tool qemu-img qemu-utils
need_host_tool dpkg-deb dpkg
need_host_tool apt-get apt

# --- resolve package versions (local apt metadata only) -----------------------------------
APT_UPDATED=
apt_update_once() {
    [ -z "$APT_UPDATED" ] || return 1
    APT_UPDATED=1
    log "apt-get update"
    apt-get update -q >&2 || true
}
kernel_package() {
    apt-cache depends "$KERNEL_META" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}'
}
KERNEL_PKG=$(kernel_package)
if [ -z "$KERNEL_PKG" ] && apt_update_once; then KERNEL_PKG=$(kernel_package); fi
[ -n "$KERNEL_PKG" ] || die "cannot resolve the kernel package behind $KERNEL_META"

PACKAGES="$KERNEL_PKG busybox-static syslinux syslinux-common mtools dosfstools"
declare -A VERSION
candidates() {  # one apt-cache call for all packages: "package version" lines
    # shellcheck disable=SC2086
    apt-cache policy $PACKAGES 2>/dev/null |
        awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} $1 == "Candidate:" && $2 != "(none)" {print p, $2}'
}
resolve_all() {
    local p v
    while read -r p v; do VERSION[$p]=$v; done < <(candidates)
    for p in $PACKAGES; do [ -n "${VERSION[$p]:-}" ] || return 1; done
}
if ! resolve_all; then
    apt_update_once || true
    resolve_all || die "no candidate version for some of: $PACKAGES"
fi

# --- cache check --------------------------------------------------------------------------
inputs_hash() {
    {
        for p in $PACKAGES; do echo "$p=${VERSION[$p]}"; done
        echo "cmdline=$CMDLINE data=$DATA_MIB stage1=$MODULES_STAGE1 stage2=$MODULES_STAGE2"
        sha256sum "$GUEST_DIR/build-image.sh" "$GUEST_DIR/init" "$GUEST_DIR/flatten-yaml.awk" | awk '{print $1}'
    } | sha256sum | awk '{print $1}'
}
HASH=$(inputs_hash)
if [ -f "$OUTDIR/$IMAGE" ] && [ "$(cat "$OUTDIR/$IMAGE.inputs" 2>/dev/null)" = "$HASH" ]; then
    log "$OUTDIR/$IMAGE is up to date"
    exit 0
fi
T0=$(date +%s.%N)

rm -f "$OUTDIR"/.$IMAGE.tmp.*  # left by an interrupted build (we hold the lock)

# --- download ----------------------------------------------------------------------------
deb_file() {  # package version -> cached .deb path (may not exist)
    local v=${2//:/%3a}
    echo "$BUILD/debs/${1}_${v}_"*.deb
}
APT_OPTS=(-q)
# as root, let apt write into var/ itself rather than as _apt (which may not reach it)
[ "$(id -u)" -ne 0 ] || APT_OPTS+=(-o APT::Sandbox::User=root)
download() {  # package=version...
    (cd "$BUILD/debs" && apt-get "${APT_OPTS[@]}" download "$@" >&2)
}
MISSING=()
for p in $PACKAGES; do
    [ -f "$(deb_file "$p" "${VERSION[$p]}")" ] || MISSING+=("$p=${VERSION[$p]}")
done
if [ ${#MISSING[@]} -gt 0 ]; then
    log "apt-get download ${MISSING[*]}"
    if ! download "${MISSING[@]}"; then
        apt_update_once || true
        download "${MISSING[@]}" || die "apt-get download ${MISSING[*]} failed"
    fi
fi
declare -A DEB
for p in $PACKAGES; do
    DEB[$p]=$(deb_file "$p" "${VERSION[$p]}")
    [ -f "${DEB[$p]}" ] || die "cannot find the downloaded $p: ${DEB[$p]}"
done
for f in "$BUILD"/debs/*.deb; do  # versions no longer wanted
    keep=
    for p in $PACKAGES; do [ "$f" = "${DEB[$p]}" ] && keep=1; done
    [ -n "$keep" ] || rm -f "$f"
done

# --- unpack ------------------------------------------------------------------------------
WORK=$BUILD/work
rm -rf "$WORK"
mkdir -p "$WORK"/{kernel,tools,busybox,initramfs,data}
dpkg-deb -x "${DEB[$KERNEL_PKG]}" "$WORK/kernel"
for p in syslinux syslinux-common mtools dosfstools; do dpkg-deb -x "${DEB[$p]}" "$WORK/tools"; done
dpkg-deb -x "${DEB[busybox-static]}" "$WORK/busybox"

KVER=$(cd "$WORK/kernel/lib/modules" && ls)
[ "$(echo "$KVER" | wc -w)" -eq 1 ] || die "expected one kernel in $KERNEL_PKG, got: $KVER"
VMLINUZ=$WORK/kernel/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no $VMLINUZ"
MODDIR=$WORK/kernel/lib/modules/$KVER

TOOLS=$WORK/tools
export PATH=$TOOLS/usr/bin:$TOOLS/sbin:$TOOLS/usr/sbin:$PATH
export MTOOLS_SKIP_CHECK=1
SYSLINUX_LIB=$TOOLS/usr/lib/syslinux

# --- modules: resolve dependencies from each module's own modinfo ------------------------
# (the package ships no modules.dep; `depends=` in .modinfo is what depmod would read)
declare -A KO_PATH KO_DEPS LOADED
while IFS= read -r f; do
    n=${f##*/}; n=${n%.ko}; n=${n//-/_}
    KO_PATH[$n]=${f#"$MODDIR"/}
done < <(find "$MODDIR" -name '*.ko')
ko_deps() {
    local n=$1
    if [ -z "${KO_DEPS[$n]+set}" ]; then
        KO_DEPS[$n]=$(tr '\0' '\n' < "$MODDIR/${KO_PATH[$n]}" | sed -n 's/^depends=//p' | tr ',' ' ')
    fi
    echo "${KO_DEPS[$n]}"
}
ORDER=()
visit() {  # depth-first: dependencies before the module
    local n=${1//-/_} d
    [ -n "${LOADED[$n]:-}" ] && return 0
    if [ -z "${KO_PATH[$n]:-}" ]; then
        grep -q "/$n.ko$" "$MODDIR/modules.builtin" 2>/dev/null && return 0
        grep -q "/${n//_/-}.ko$" "$MODDIR/modules.builtin" 2>/dev/null && return 0
        die "module $n is neither in $KERNEL_PKG nor built in"
    fi
    LOADED[$n]=1
    for d in $(ko_deps "$n"); do visit "$d"; done
    ORDER+=("${KO_PATH[$n]}")
}
mkdir -p "$WORK/initramfs/lib/modules" "$WORK/initramfs/etc"
for stage in 1 2; do
    ORDER=()
    if [ $stage = 1 ]; then mods=$MODULES_STAGE1; else mods=$MODULES_STAGE2; fi
    for m in $mods; do visit "$m"; done
    : > "$WORK/initramfs/etc/modules.stage$stage"
    for ko in "${ORDER[@]}"; do
        cp "$MODDIR/$ko" "$WORK/initramfs/lib/modules/"
        echo "${ko##*/}" >> "$WORK/initramfs/etc/modules.stage$stage"
    done
done

# --- initramfs -----------------------------------------------------------------------------
IR=$WORK/initramfs
mkdir -p "$IR"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,data,root,mnt}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
install -m 0755 "$GUEST_DIR/init" "$IR/init"
mkdir -p "$IR/lib/paddock"
install -m 0644 "$GUEST_DIR/flatten-yaml.awk" "$IR/lib/paddock/flatten-yaml.awk"
cat > "$IR/etc/paddock-guest-release" <<EOF
image=paddock-tiny
inputs=$HASH
kernel=$KERNEL_PKG ${VERSION[$KERNEL_PKG]} ($KVER)
busybox=${VERSION[busybox-static]}
EOF
echo "root:x:0:0:root:/root:/bin/sh" > "$IR/etc/passwd"
echo "root:x:0:" > "$IR/etc/group"
(cd "$IR" && find . -mindepth 1 | sort | "$WORK/busybox/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) |
    gzip -9n > "$WORK/initrd.gz"

# --- partition 1: FAT16 with syslinux, kernel, initramfs ------------------------------------
cat > "$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT paddock
PROMPT 0
TIMEOUT 1
LABEL paddock
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND $CMDLINE
EOF
payload=$(( $(stat -c %s "$VMLINUZ") + $(stat -c %s "$WORK/initrd.gz") ))
BOOT_MIB=$(( payload / 1048576 + 5 ))
[ $BOOT_MIB -ge 16 ] || BOOT_MIB=16
BOOT_IMG=$WORK/boot.fat
mkfs.fat -F 16 -n PADDOCKBOOT -i 50444b31 -h $(( BOOT_START_MIB * 2048 )) \
    -C "$BOOT_IMG" $(( BOOT_MIB * 1024 )) >/dev/null
syslinux --install "$BOOT_IMG"
mcopy -i "$BOOT_IMG" "$VMLINUZ" ::/vmlinuz
mcopy -i "$BOOT_IMG" "$WORK/initrd.gz" ::/initrd.gz
mcopy -i "$BOOT_IMG" "$WORK/syslinux.cfg" ::/syslinux.cfg
BOOT_LIST=$(mdir -a -i "$BOOT_IMG" ::/)
grep -qi '^ldlinux *sys' <<<"$BOOT_LIST" || die "syslinux did not install ldlinux.sys"
if ! grep -qi '^ldlinux *c32' <<<"$BOOT_LIST"; then
    mcopy -i "$BOOT_IMG" "$SYSLINUX_LIB/modules/bios/ldlinux.c32" ::/ldlinux.c32
fi

# --- partition 2: ext4, populated from a directory, no mount ---------------------------------
mkdir -p "$WORK/data/paddock" "$WORK/data/root"
chmod 0700 "$WORK/data/root"
cp "$IR/etc/paddock-guest-release" "$WORK/data/paddock/image-release"
DATA_IMG=$WORK/data.ext4
rm -f "$DATA_IMG"
truncate -s "${DATA_MIB}M" "$DATA_IMG"
mke2fs -q -F -t ext4 -L paddock-data -m 0 -E root_owner=0:0 -d "$WORK/data" "$DATA_IMG" "${DATA_MIB}M"

# --- the disk: MBR (syslinux mbr.bin + partition table) and the two partitions --------------
RAW=$WORK/disk.raw
P1_START=$(( BOOT_START_MIB * 2048 ))
P1_SIZE=$(( BOOT_MIB * 2048 ))
P2_START=$(( P1_START + P1_SIZE ))
P2_SIZE=$(( DATA_MIB * 2048 ))
TOTAL=$(( P2_START + P2_SIZE ))
truncate -s $(( TOTAL * 512 )) "$RAW"

byte() { printf "\\$(printf '%03o' $(( $1 & 255 )))"; }
le32() { byte "$1"; byte $(( $1 >> 8 )); byte $(( $1 >> 16 )); byte $(( $1 >> 24 )); }
chs() {  # LBA -> CHS for a 255-head, 63-sector geometry (saturating)
    local lba=$1 c h s
    c=$(( lba / (255 * 63) ))
    if [ $c -gt 1023 ]; then byte 254; byte 255; byte 255; return; fi
    h=$(( (lba / 63) % 255 )); s=$(( lba % 63 + 1 ))
    byte $h; byte $(( s | ((c >> 2) & 0xc0) )); byte $c
}
part() {  # status type start sectors
    byte "$1"; chs "$3"; byte "$2"; chs $(( $3 + $4 - 1 )); le32 "$3"; le32 "$4"
}
dd if="$SYSLINUX_LIB/mbr/mbr.bin" of="$RAW" bs=440 count=1 conv=notrunc status=none
{
    le32 $DISK_SIGNATURE; byte 0; byte 0
    part 0x80 0x0e $P1_START $P1_SIZE
    part 0x00 0x83 $P2_START $P2_SIZE
    head -c 32 /dev/zero
    byte 0x55; byte 0xaa
} | dd of="$RAW" bs=1 seek=440 conv=notrunc status=none
dd if="$BOOT_IMG" of="$RAW" bs=1M seek=$BOOT_START_MIB conv=notrunc status=none
dd if="$DATA_IMG" of="$RAW" bs=512 seek=$P2_START conv=notrunc status=none

# --- qcow2, installed atomically --------------------------------------------------------------
TMP_OUT=$OUTDIR/.$IMAGE.tmp.$$
qemu-img convert -q -f raw -O qcow2 "$RAW" "$TMP_OUT"
chmod 0644 "$TMP_OUT"
{
    echo "image=$IMAGE"
    echo "inputs=$HASH"
    echo "kernel_release=$KVER"
    echo "cmdline=$CMDLINE"
    echo "virtual_size=$(( TOTAL * 512 ))"
    echo "boot_partition=1 fat16 start=$P1_START sectors=$P1_SIZE"
    echo "data_partition=2 ext4 label=paddock-data start=$P2_START sectors=$P2_SIZE"
    for p in $PACKAGES; do echo "package=$p ${VERSION[$p]}"; done
    echo "modules=$(cat "$IR/etc/modules.stage1" "$IR/etc/modules.stage2" | tr '\n' ' ')"
    echo "sha256=$(sha256sum "$TMP_OUT" | awk '{print $1}')"
} > "$OUTDIR/paddock-tiny.manifest"
mv -f "$TMP_OUT" "$OUTDIR/$IMAGE"
echo "$HASH" > "$OUTDIR/$IMAGE.inputs"
rm -rf "$WORK"
T1=$(date +%s.%N)
log "built $OUTDIR/$IMAGE ($(du -k "$OUTDIR/$IMAGE" | awk '{print $1}') KiB on disk) in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}') s"
