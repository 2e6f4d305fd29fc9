"""A multi-host hypervisor testbed on one machine.

Each host is a network namespace joined by a veth pair to a bridge in the root namespace,
running its own `libvirtd --listen` (TCP, no auth, bound to the host's address inside its
namespace) with its own run, state and config directories bind-mounted over the standard
paths in a private mount namespace, and its own sshd (root by the testbed's key: how the
LXC backend reaches the host as a container host, testbed/sshd.py). Needs root, iproute2,
libvirt-daemon, QEMU, openssh-server and lxc.
"""
