"""nova-compute with the sandbox's guest-emulation driver.

Nova loads `compute_driver` only from its own `nova.virt` package, so the driver module is registered there
under the name `nova.virt.sandbox_guest` before nova-compute's own entry point runs.
"""

import sys

from nova.cmd import compute  # first: it sets up nova's runtime (monkey patching) before other nova imports

from sandbox import guest_emulation

sys.modules["nova.virt.sandbox_guest"] = guest_emulation

if __name__ == "__main__":
    sys.exit(compute.main())
