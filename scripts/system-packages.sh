#!/usr/bin/env bash
# Check the Debian/Ubuntu packages that Paddock needs; as root, install the missing ones.
#
#   scripts/system-packages.sh           what `make run` needs
#   scripts/system-packages.sh --browser  the same plus Chromium for the browser tests
#   scripts/system-packages.sh --system   the same plus libvirtd and QEMU for the real-host
#                                         system suite (make test-system)
#   scripts/system-packages.sh --bench    the same plus wrk (optional) for make bench-http
#
# - libvirt-dev, pkg-config, gcc, python3-dev: libvirt-python has no wheels on PyPI and is
#   built from source against the system libvirt; libvirt-dev brings libvirt0, whose
#   library contains the test:///default driver the demo host and the tests use. A real
#   qemu:///system host also needs libvirt-daemon-system and qemu-system-x86 (--system).
# - python3-venv: the tools venv that uv is installed into.
# - qemu-utils: qemu-img, with which a worker rebuilds a disk from a backup chain for a
#   restore (hosting/backups/images.py).
# - nodejs, npm: the front-end assets (skipped when npm is already on PATH, e.g. from a
#   nodejs package that bundles npm).
# - chromium (--browser): Debian's Chromium for the Playwright browser tests.
# - openssh-server (--browser, the test set): the tests start their own sshd on a free
#   loopback port for the SFTP backup store (tests/test_backup_store.py); the package's
#   own service is not needed.
# - lxc, e2fsprogs (--browser, the test set): tests/test_backend_lxc.py runs real containers
#   through the LXC backend's local transport (lxc-start, mkfs.ext4 -d).
# - wrk (--bench): the HTTP load generator of bench/http_load.py (optional: without it
#   the benchmark drives the server with its own Python client).
# - --system: libvirtd with the QEMU driver, QEMU (TCG where KVM is missing), qemu-img,
#   iproute2 (network namespaces), e2fsprogs (the guest image), dnsmasq-base (libvirt
#   networks), nftables (the testbed keeps guests away from libvirtd) for the testbed in
#   testbed/ and tests/system/, and for the real guests of
#   `make run` as root (testbed/local.py); openssh-server (each testbed host's sshd,
#   testbed/sshd.py) and lxc (the container hosts, and the container template's tests).
set -euo pipefail

browser=false
system=false
bench=false
case "${1:-}" in
    --browser) browser=true ;;
    --system) system=true ;;
    --bench) bench=true ;;
esac

required=(libvirt-dev pkg-config gcc python3-dev python3-venv qemu-utils)
command -v npm >/dev/null 2>&1 || required+=(nodejs npm)
if $system; then
    required+=(libvirt-daemon-system qemu-system-x86 qemu-utils iproute2 e2fsprogs dnsmasq-base
        nftables openssh-server lxc)
fi
optional=()
if $browser && [ ! -x /usr/bin/chromium ]; then
    optional+=(chromium)
fi
if $browser; then
    required+=(openssh-server lxc e2fsprogs)
fi
if $bench && ! command -v wrk >/dev/null 2>&1; then
    optional+=(wrk)
fi

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "This is not a Debian/Ubuntu system: make sure the equivalents of these packages" >&2
    echo "are installed: ${required[*]} ${optional[*]}" >&2
    exit 0
fi

missing=()
for pkg in "${required[@]}"; do is_installed "$pkg" || missing+=("$pkg"); done
missing_optional=()
for pkg in "${optional[@]}"; do is_installed "$pkg" || missing_optional+=("$pkg"); done

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    all=("${missing[@]}" "${missing_optional[@]}")
    echo "Paddock needs these system packages, which are not installed: ${all[*]}" >&2
    echo "Install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${all[*]}" >&2
    echo "(or run make as root, which installs them itself)." >&2
    [ ${#missing[@]} -eq 0 ] && exit 0  # only optional ones are missing: tests skip,
                                        # the benchmark uses its Python client
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "Installing system packages: ${missing[*]} ${missing_optional[*]}"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
    # Debian has `chromium`; Ubuntu ships Chromium as a snap only, so this may fail there.
    apt-get install -y -qq --no-install-recommends "${missing_optional[@]}" ||
        echo "Could not install ${missing_optional[*]}: the browser tests will be skipped," \
            "bench/http_load.py uses its Python client." >&2
fi
