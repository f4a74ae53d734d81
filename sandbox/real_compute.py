"""nova-compute of the sandbox's real host: Nova's own libvirt driver, with four adjustments for a 2-core host
that runs it as root without an agent or a privsep daemon.

- Privileged helpers run in this process. Nova asks oslo.privsep for its root-only steps (creating a tap,
  setting its MTU); privsep would start a helper daemon through sudo and rootwrap. The sandbox runs as root
  already (it makes bridges), so the privileged functions run directly.
- A guest may have more vCPUs than the machine has cores. Nova caps one server's VCPU at the host's core count
  (placement `max_unit`), so a 2-core machine could never boot the 8-vCPU test node that R4 and R5 are about.
  Under QEMU TCG a vCPU is a thread like any other: the cap is lifted to the host's VCPU capacity (cores times
  the allocation ratio), which is what the guests then share (and R11 cannot see it: TCG has no steal clock).
- Reading a guest's serial pty must not make it this process's controlling terminal. Run directly, Nova's
  privileged `readpty` opens the pty without O_NOCTTY, and this process leads its own session (the sandbox
  starts every service so): the pty became its terminal, the guest's exit hung it up, and the SIGHUP made
  oslo.service end the service's wait, so that the interpreter's exit handlers stopped the thread pools under
  the running service (the next server delete hung for good). The pty is opened with O_NOCTTY instead.
- A plugged tap joins the sandbox's bridge. Neutron binds this host's ports as `tap` (sandbox/neutron_binding.py):
  Nova creates the tap and libvirt hands it to QEMU (`<interface type='ethernet'>`, managed='no'); no agent is
  there to attach it to the network, so the VIF driver does it right after creating it.

Run as `python -m sandbox.real_compute --config-file nova.conf --config-file nova-real.conf`; the bridge's name
comes from SANDBOX_GUEST_BRIDGE.
"""

import os  # noqa: I001 (nova.cmd.compute must be imported before the other nova modules)
import sys

from nova.cmd import compute  # first: it sets up nova's runtime (monkey patching) before other nova imports

import nova.privsep  # noqa: E402
import nova.privsep.libvirt  # noqa: E402
import os_resource_classes as orc  # noqa: E402
from nova.virt.libvirt import driver, vif  # noqa: E402

from sandbox.real_host import attach_tap  # noqa: E402


def run_privileged_in_process() -> None:
    nova.privsep.sys_admin_pctxt.set_client_mode(False)
    nova.privsep.libvirt.readpty = readpty_without_controlling_terminal


def readpty_without_controlling_terminal(path: str) -> str:
    """nova.privsep.libvirt.readpty: what the pty holds now (non-blocking), '' on any error; opened O_NOCTTY."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return ""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EAGAIN: nothing more now (or the guest went away)
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def vcpus_up_to_capacity() -> None:
    update_provider_tree = driver.LibvirtDriver.update_provider_tree

    def update_with_vcpu_capacity(self, provider_tree, nodename, allocations=None):
        update_provider_tree(self, provider_tree, nodename, allocations=allocations)
        inventory = provider_tree.data(nodename).inventory
        vcpu = inventory.get(orc.VCPU)
        if vcpu:
            vcpu["max_unit"] = int(vcpu["total"] * vcpu["allocation_ratio"])
            provider_tree.update_inventory(nodename, inventory)

    driver.LibvirtDriver.update_provider_tree = update_with_vcpu_capacity


def plug_taps_into(bridge: str) -> None:
    plug_tap = vif.LibvirtGenericVIFDriver.plug_tap

    def plug_tap_and_attach(self, instance, vif_info):
        plug_tap(self, instance, vif_info)
        attach_tap(bridge, self.get_vif_devname(vif_info))

    vif.LibvirtGenericVIFDriver.plug_tap = plug_tap_and_attach


if __name__ == "__main__":
    run_privileged_in_process()
    vcpus_up_to_capacity()
    plug_taps_into(os.environ["SANDBOX_GUEST_BRIDGE"])
    sys.exit(compute.main())
