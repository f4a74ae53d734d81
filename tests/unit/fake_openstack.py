"""An in-memory stand-in for the parts of openstacksdk the dynamic checks use, counting every call."""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections import Counter
from types import SimpleNamespace

import requests
from openstack import exceptions as os_exc

from conformance import interrupt


def http_error(message: str, status: int, cls=os_exc.HttpException) -> os_exc.HttpException:
    """What openstacksdk raises for an HTTP error: the status comes from a response, as in the real thing."""
    response = requests.Response()
    response.status_code = status
    return cls(message=message, response=response)


class FakeServer(SimpleNamespace):
    pass


class FakeCompute:
    def __init__(self, cloud):
        self.cloud = cloud
        self.servers_by_id: dict[str, FakeServer] = {}
        self.keypair_map: dict[str, SimpleNamespace] = {}
        self.attachments: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    # servers
    def create_server(self, name, image_id=None, flavor_id=None, networks=None, metadata=None, **kw):
        self.cloud.count("POST /servers")
        with self.lock:
            live = [s for s in self.servers_by_id.values() if not s.deleting]
            if self.cloud.quota_instances is not None and len(live) >= self.cloud.quota_instances:
                raise http_error(
                    "Quota exceeded for instances: Requested 1, but already "
                    f"used {len(live)} of {self.cloud.quota_instances} instances",
                    403,
                    os_exc.HttpException,
                )
            server = FakeServer(
                id=str(uuid.uuid4()),
                name=name,
                status="BUILD",
                fault=None,
                created_at="2030-01-01T00:00:00Z",
                launched_at=None,
                metadata=metadata or {},
                polls=0,
                deleting=False,
                delete_polls=0,
                addresses={},
                attached_volumes=[],
            )
            self.servers_by_id[server.id] = server
            for mapping in kw.get("block_device_mapping") or []:  # boot from volume: Nova makes the volume
                volume = self.cloud.block_storage.make_boot_volume(server, mapping)
                server.attached_volumes.append({"id": volume.id, "delete_on_termination": True})
        return server

    def _tick(self):
        for server in list(self.servers_by_id.values()):
            server.polls += 1
            if server.deleting:
                server.delete_polls += 1
                if server.delete_polls >= self.cloud.delete_after_polls:
                    del self.servers_by_id[server.id]
                    self.cloud.block_storage.server_deleted(server)
            elif server.status == "BUILD" and not self.cloud.compute_paused:
                if server.polls >= self.cloud.active_after_polls:
                    if self.cloud.error_names and re.search(self.cloud.error_names, server.name):
                        server.status = "ERROR"
                        server.fault = (
                            {"message": "No valid host was found.", "code": 500}
                            if self.cloud.fault_in_listing
                            else None
                        )
                        server.hidden_fault = {"message": "No valid host was found.", "code": 500}
                    else:
                        server.status = "ACTIVE"
                        server.launched_at = "2030-01-01T00:00:07.500000"

    def servers(self, details=True, name=None, **kw):
        self.cloud.count("GET /servers/detail" if details else "GET /servers")
        with self.lock:
            self._tick()
            found = [s for s in self.servers_by_id.values() if not name or re.search(name, s.name)]
        return iter([FakeServer(**vars(s)) for s in found])

    def get_server(self, server_id):
        self.cloud.count("GET /servers/{id}")
        with self.lock:
            self._tick()
            server = self.servers_by_id.get(server_id)
            if server is None:
                raise http_error(f"server {server_id} not found", 404, os_exc.NotFoundException)
            copy = FakeServer(**vars(server))
            if getattr(server, "hidden_fault", None):
                copy.fault = server.hidden_fault
            return copy

    def delete_server(self, server_id, ignore_missing=True):
        self.cloud.count("DELETE /servers/{id}")
        self.cloud.order.append(("server", server_id))
        if self.cloud.fail_deletes:
            raise http_error("delete refused", 500, os_exc.HttpException)
        with self.lock:
            server = self.servers_by_id.get(server_id)
            if server is None:
                if ignore_missing:
                    return
                raise http_error("gone", 404, os_exc.NotFoundException)
            if self.cloud.delete_goes_error:  # as Nova does when Neutron refuses to delete the port
                server.status, server.task_state = "ERROR", None
                server.fault = {"message": "rule:delete_port is disallowed by policy", "code": 403}
                server.delete_attempts = getattr(server, "delete_attempts", 0) + 1
                return
            server.deleting = True

    # keypairs
    def create_keypair(self, name, public_key=None):
        self.keypair_map[name] = SimpleNamespace(id=name, name=name)
        return self.keypair_map[name]

    def keypairs(self, **kw):
        return iter(list(self.keypair_map.values()))

    def get_keypair(self, name):
        if name not in self.keypair_map:
            raise http_error("no keypair", 404, os_exc.NotFoundException)
        return self.keypair_map[name]

    def delete_keypair(self, name, ignore_missing=True):
        self.keypair_map.pop(name, None)

    def delete_volume_attachment(self, server_id, volume_id, ignore_missing=True):
        self.order.append(("detach", volume_id))
        self.cloud.block_storage.vols[volume_id].attachments = []
        self.cloud.block_storage.vols[volume_id].status = "available"


class FakeNetwork:
    def __init__(self, cloud):
        self.cloud = cloud
        self.fips: dict[str, SimpleNamespace] = {}
        self.port_map: dict[str, SimpleNamespace] = {}
        self.groups: dict[str, SimpleNamespace] = {}

    def ips(self, **kw):
        return iter(list(self.fips.values()))

    def get_ip(self, fip_id):
        if fip_id not in self.fips:
            raise http_error("no fip", 404, os_exc.NotFoundException)
        return self.fips[fip_id]

    def delete_ip(self, fip_id, ignore_missing=True):
        self.cloud.order.append(("floating_ip", fip_id))
        self.fips.pop(fip_id, None)

    def security_groups(self, **kw):
        return iter(list(self.groups.values()))

    def create_security_group(self, name, description=""):
        group = SimpleNamespace(id=f"g-{next(FakeCloud._ids)}", name=name, description=description)
        self.groups[group.id] = group
        return group

    def update_security_group(self, group_id, **attrs):
        for key, value in attrs.items():
            setattr(self.groups[group_id], key, value)
        return self.groups[group_id]

    def get_security_group(self, group_id):
        if group_id not in self.groups:
            raise http_error("no group", 404, os_exc.NotFoundException)
        return self.groups[group_id]

    def delete_security_group(self, group_id, ignore_missing=True):
        self.cloud.order.append(("security_group", group_id))
        self.groups.pop(group_id, None)

    def ports(self, **kw):
        return iter(list(self.port_map.values()))

    def get_port(self, port_id):
        if port_id not in self.port_map:
            raise http_error("no port", 404, os_exc.NotFoundException)
        return self.port_map[port_id]

    def delete_port(self, port_id, ignore_missing=True):
        self.cloud.order.append(("port", port_id))
        self.port_map.pop(port_id, None)


class FakeBlockStorage:
    def __init__(self, cloud):
        self.cloud = cloud
        self.vols: dict[str, SimpleNamespace] = {}
        self.keep_boot_volumes = False  # a Nova that fails to delete them with their server

    def make_boot_volume(self, server, mapping):
        volume = SimpleNamespace(
            id=str(uuid.uuid4()),
            name="",
            status="in-use",
            size=mapping["volume_size"],
            attachments=[{"server_id": server.id}],
            volume_image_metadata={"image_id": mapping["uuid"], "image_name": "img"},
        )
        self.vols[volume.id] = volume
        return volume

    def server_deleted(self, server):
        for entry in server.attached_volumes:
            volume = self.vols.get(entry["id"])
            if volume is not None:
                volume.attachments = []
                volume.status = "available" if self.keep_boot_volumes else "deleting"

    def volumes(self, **kw):
        self.cloud.count("GET /volumes/detail")
        for volume in list(self.vols.values()):  # a delete takes one listing to complete
            if volume.status == "deleting":
                if getattr(volume, "seen_deleting", False):
                    del self.vols[volume.id]
                volume.seen_deleting = True
        return iter([SimpleNamespace(**vars(v)) for v in self.vols.values()])

    def get_volume(self, volume_id):
        if volume_id not in self.vols:
            raise http_error("no volume", 404, os_exc.NotFoundException)
        return self.vols[volume_id]

    def delete_volume(self, volume_id, ignore_missing=True):
        self.cloud.count("DELETE /volumes/{id}")
        self.cloud.order.append(("volume", volume_id))
        volume = self.vols.get(volume_id)
        if volume is not None and volume.status not in ("available", "error"):
            raise http_error(
                f"Invalid volume: status must be available or error, but current status is: {volume.status}", 400
            )
        self.vols.pop(volume_id, None)


class FakeImage:
    def __init__(self, cloud):
        self.cloud = cloud
        self.imgs: dict[str, SimpleNamespace] = {}

    def images(self, **kw):
        return iter(list(self.imgs.values()))

    def get_image(self, image_id):
        if image_id not in self.imgs:
            raise http_error("no image", 404, os_exc.NotFoundException)
        return self.imgs[image_id]

    def delete_image(self, image_id, ignore_missing=True):
        self.cloud.order.append(("image", image_id))
        self.imgs.pop(image_id, None)


class FakeCloud:
    """Looks like conformance.cloud.Cloud: .conn, .scope, .calls (CallRecord-like), .call()."""

    _ids = itertools.count()

    def __init__(
        self,
        scope="zuul/RegionOne",
        active_after_polls=2,
        delete_after_polls=1,
        quota_instances=None,
        error_names=None,
        fault_in_listing=True,
        with_records=True,
    ):
        self.scope = scope
        self.name, self.region = scope.split("/")
        self.active_after_polls = active_after_polls
        self.delete_after_polls = delete_after_polls
        self.quota_instances = quota_instances
        self.error_names = error_names
        self.fault_in_listing = fault_in_listing
        self.compute_paused = False
        self.fail_deletes = False
        self.delete_goes_error = False
        self.counts: Counter = Counter()
        self.calls = [] if with_records else None
        self.order: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.conn = SimpleNamespace()
        self.compute = FakeCompute(self)
        self.compute.order = self.order
        self.network = FakeNetwork(self)
        self.block_storage = FakeBlockStorage(self)
        self.image = FakeImage(self)
        self.conn.compute, self.conn.network = self.compute, self.network
        self.conn.block_storage, self.conn.image = self.block_storage, self.image
        if not with_records:
            del self.calls

    def count(self, key):
        with self._lock:
            self.counts[key] += 1
            if getattr(self, "calls", None) is not None:
                method, path = key.split(" ", 1)
                self.calls.append(
                    SimpleNamespace(method=method, path="/v2.1" + path, status=200, seconds=0.01, service="compute")
                )

    def call(self, fn, *args, **kwargs):
        interrupt.check()  # a safe point, as Cloud.call is
        return fn(*args, **kwargs)
