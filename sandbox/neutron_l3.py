"""Neutron's L3 router plugin for a cloud without an L3 agent: a floating IP is ACTIVE while it is associated.

Neutron's own plugin creates every floating IP DOWN and waits for an L3 agent to report it ACTIVE once the NAT is
in place. The sandbox runs no agent (and no NAT: its guests' traffic never leaves this machine), so an associated
floating IP would stay DOWN for ever, and a client that waits for ACTIVE, as zuul-launcher does before it uses a
node, would wait until its launch timeout. This plugin reports what an agent would. Loaded by its class path in
neutron.conf's `service_plugins`.
"""

from neutron.services.l3_router.l3_router_plugin import L3RouterPlugin
from neutron_lib import constants


def _status(floatingip: dict) -> str:
    return constants.FLOATINGIP_STATUS_ACTIVE if floatingip.get("port_id") else constants.FLOATINGIP_STATUS_DOWN


class AgentlessL3RouterPlugin(L3RouterPlugin):
    def create_floatingip(self, context, floatingip):
        # L3RouterPlugin forces DOWN; the database mixin behind it takes the status to start with.
        return super(L3RouterPlugin, self).create_floatingip(
            context, floatingip, initial_status=_status(floatingip.get("floatingip") or {})
        )

    def update_floatingip(self, context, id, floatingip):
        result = super().update_floatingip(context, id, floatingip)
        status = _status(result)
        if result.get("status") != status:
            self.update_floatingip_status(context, id, status)
            result["status"] = status
        return result
