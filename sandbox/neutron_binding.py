"""An ML2 mechanism driver that binds every port on any host, so Neutron works without agents.

Neutron's shipped `test` driver asserts on test-only port contexts and fails real bindings; this one binds the
first segment it is offered with an OVS VIF, which Nova's fake virt driver accepts. Registered through the
`neutron.ml2.mechanism_drivers` entry point `sandbox_bind_all` (pyproject.toml).
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True},
                status=constants.PORT_STATUS_ACTIVE,
            )
            return
