#!/bin/bash
# Build the Paddock tiny container template: guest/build-rootfs.sh [OUTDIR]  (default var/images)
#
# Output: OUTDIR/paddock-tiny-rootfs.tar.gz (+ .inputs stamp and paddock-tiny-rootfs.manifest),
# the root file system of an LXC system container:
#   /bin/busybox (Debian's busybox-static) and a symlink per applet, /sbin/init -> busybox
#   /etc/inittab, /etc/init.d/rcS (guest/rootfs/): the same console lines as the VM guest
#   /etc/passwd, /etc/group (root), /etc/hostname, /root/.ssh, /var/lib/paddock (heartbeat)
#
# busybox-static comes from the Debian mirror with `apt-get download` (cached in
# var/guest-build/debs, shared with build-image.sh) and is unpacked with `dpkg-deb -x`.
# The tarball is deterministic: sorted, owner 0:0, a fixed mtime, gzip without a timestamp
# (written by Python's tarfile). A second run with unchanged inputs is a no-op.
set -euo pipefail
export LC_ALL=C

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$GUEST_DIR/.." && pwd)
OUTDIR=${1:-$ROOT/var/images}
BUILD=${PADDOCK_GUEST_BUILD:-$ROOT/var/guest-build}
TARBALL=paddock-tiny-rootfs.tar.gz
MANIFEST=paddock-tiny-rootfs.manifest
TEMPLATE=$GUEST_DIR/rootfs  # files copied as they are (inittab, rcS)
MTIME=1700000000            # every member's mtime (2023-11-14), for a reproducible tarball

log() { echo "build-rootfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$BUILD/debs" "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

if command -v flock >/dev/null; then
    exec 9>"$BUILD/.lock"  # the same lock as build-image.sh: they share the .deb cache
    flock 9
fi

export PATH=$PATH:/usr/sbin:/sbin
for tool in dpkg-deb apt-get apt-cache python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

# --- resolve the package version (local apt metadata only) ------------------------------------
PACKAGE=busybox-static
APT_UPDATED=
apt_update_once() {
    [ -z "$APT_UPDATED" ] || return 1
    APT_UPDATED=1
    log "apt-get update"
    apt-get update -q >&2 || true
}
candidate() {
    apt-cache policy "$PACKAGE" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}' | head -n 1
}
VERSION=$(candidate)
if [ -z "$VERSION" ] && apt_update_once; then VERSION=$(candidate); fi
[ -n "$VERSION" ] || die "no candidate version for $PACKAGE"

# --- cache check ------------------------------------------------------------------------------
inputs_hash() {
    {
        echo "$PACKAGE=$VERSION mtime=$MTIME"
        (cd "$GUEST_DIR" && find build-rootfs.sh rootfs -type f | sort | xargs sha256sum)
        (cd "$GUEST_DIR" && find rootfs -type f -perm -u+x | sort)
    } | sha256sum | awk '{print $1}'
}
HASH=$(inputs_hash)
if [ -f "$OUTDIR/$TARBALL" ] && [ "$(cat "$OUTDIR/$TARBALL.inputs" 2>/dev/null)" = "$HASH" ]; then
    log "$OUTDIR/$TARBALL is up to date"
    exit 0
fi
T0=$(date +%s.%N)
rm -f "$OUTDIR"/.$TARBALL.tmp.*  # left by an interrupted build (we hold the lock)

# --- download ------------------------------------------------------------------------------------
DEB=$(echo "$BUILD/debs/${PACKAGE}_${VERSION//:/%3a}_"*.deb)
APT_OPTS=(-q)
[ "$(id -u)" -ne 0 ] || APT_OPTS+=(-o APT::Sandbox::User=root)
download() { (cd "$BUILD/debs" && apt-get "${APT_OPTS[@]}" download "$PACKAGE=$VERSION" >&2); }
if [ ! -f "$DEB" ]; then
    log "apt-get download $PACKAGE=$VERSION"
    if ! download; then
        apt_update_once || true
        download || die "apt-get download $PACKAGE=$VERSION failed"
    fi
    DEB=$(echo "$BUILD/debs/${PACKAGE}_${VERSION//:/%3a}_"*.deb)
    [ -f "$DEB" ] || die "cannot find the downloaded $PACKAGE: $DEB"
fi

# --- the tree ----------------------------------------------------------------------------------
WORK=$BUILD/rootfs-work
rm -rf "$WORK"
mkdir -p "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
BUSYBOX=$WORK/deb/bin/busybox
[ -x "$BUSYBOX" ] || die "no bin/busybox in $DEB"

FS=$WORK/rootfs
mkdir -p "$FS"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,dev,proc,sys,run,tmp,mnt,root/.ssh,var/lib/paddock,var/log}
install -m 0755 "$BUSYBOX" "$FS/bin/busybox"
# one symlink per applet, where busybox itself would install it (bin, sbin, usr/bin, usr/sbin)
APPLETS=0
while read -r path; do
    case $path in */*) ;; *) continue ;; esac  # (linuxrc and the like: not in a container)
    [ "$path" = bin/busybox ] && continue
    dir=${path%/*}
    [ -e "$FS/$path" ] || [ -L "$FS/$path" ] && continue
    if [ "$dir" = bin ]; then
        ln -s busybox "$FS/$path"
    else
        ln -s "$(echo "$dir" | sed 's|[^/]*|..|g')/bin/busybox" "$FS/$path"
    fi
    APPLETS=$((APPLETS + 1))
done < <("$BUSYBOX" --list-full | sort)
[ -L "$FS/sbin/init" ] || die "busybox has no init applet"
[ -L "$FS/bin/sh" ] || die "busybox has no sh applet"

cp -a "$TEMPLATE/." "$FS/"
echo "root:x:0:0:root:/root:/bin/sh" > "$FS/etc/passwd"
echo "root:x:0:" > "$FS/etc/group"
echo "paddock-guest" > "$FS/etc/hostname"
cat > "$FS/etc/paddock-guest-release" <<EOF
image=paddock-tiny-rootfs
inputs=$HASH
busybox=$VERSION
EOF
chmod 0700 "$FS/root" "$FS/root/.ssh"
chmod 1777 "$FS/tmp"

# --- the tarball: deterministic, installed atomically ----------------------------------------------
TMP_OUT=$OUTDIR/.$TARBALL.tmp.$$
python3 - "$FS" "$TMP_OUT" "$MTIME" <<'EOF'
import gzip, os, sys, tarfile

root, out, mtime = sys.argv[1], sys.argv[2], int(sys.argv[3])


def members(top):
    """Every path under top, depth first, each directory's entries sorted by name."""
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        yield path
        if os.path.isdir(path) and not os.path.islink(path):
            yield from members(path)


with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
    with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in [root, *members(root)]:
            rel = os.path.relpath(path, root)
            info = tar.gettarinfo(path, "./" if rel == "." else "./" + rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if info.isreg():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
EOF
chmod 0644 "$TMP_OUT"
{
    echo "image=$TARBALL"
    echo "inputs=$HASH"
    echo "package=$PACKAGE $VERSION"
    echo "applets=$APPLETS"
    echo "size=$(stat -c %s "$TMP_OUT")"
    echo "unpacked_kib=$(du -sk "$FS" | awk '{print $1}')"
    echo "sha256=$(sha256sum "$TMP_OUT" | awk '{print $1}')"
} > "$OUTDIR/$MANIFEST"
mv -f "$TMP_OUT" "$OUTDIR/$TARBALL"
echo "$HASH" > "$OUTDIR/$TARBALL.inputs"
rm -rf "$WORK"
T1=$(date +%s.%N)
log "built $OUTDIR/$TARBALL ($(du -k "$OUTDIR/$TARBALL" | awk '{print $1}') KiB, $APPLETS applets) in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}') s"
