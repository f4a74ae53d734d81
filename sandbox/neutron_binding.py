"""An ML2 mechanism driver that binds every port on any host, so Neutron works without agents.

Neutron's shipped `test` driver asserts on test-only port contexts and fails real bindings; this one binds the
first segment it is offered: with an OVS VIF on the fake hypervisor's host (Nova's fake driver plugs nothing),
and as a `tap` on the real host (sandbox/real_host.py), whose nova-compute creates the tap and puts it on the
sandbox's bridge. Registered through the `neutron.ml2.mechanism_drivers` entry point `sandbox_bind_all`
(pyproject.toml).
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api

from sandbox.configs import REAL_COMPUTE_HOST


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        if context.host == REAL_COMPUTE_HOST:
            # No security group filtering on the host: nothing but the host itself is on the bridge.
            vif_type, details = portbindings.VIF_TYPE_TAP, {portbindings.CAP_PORT_FILTER: False}
        else:
            vif_type, details = portbindings.VIF_TYPE_OVS, {portbindings.CAP_PORT_FILTER: True}
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], vif_type, details, status=constants.PORT_STATUS_ACTIVE)
            return
