"""What a run left in the sandbox, read through the sandbox's own API: the leftover lister every test uses, and
counts of every kind of resource."""

from __future__ import annotations

from conformance.resources import prefix_of, run_of_volume

PROJECT_CLOUDS = ("sandbox-zuul", "sandbox-ci")


def leftovers(sandbox, run: str | None = None) -> list[str]:
    """Every server, volume, image, floating IP, port, keypair and security group carrying a run prefix (this
    run's only when given) in both projects, listed as the projects' own users."""
    found = []
    for cloud in PROJECT_CLOUDS:
        conn = sandbox.connect(cloud)
        project = conn.current_project_id

        def keep(kind, name, rid, cloud=cloud):
            prefix = prefix_of(name)
            if prefix and (run is None or prefix == run):
                found.append(f"{cloud} {kind} {name} {rid}")

        for s in conn.compute.servers(details=False):
            keep("server", s.name, s.id)
        for v in conn.block_storage.volumes(details=True):  # boot volumes carry the run in their image metadata
            keep("volume", run_of_volume(v), v.id)
        for i in conn.image.images(owner=project):
            keep("image", i.name, i.id)
        for f in conn.network.ips(project_id=project):
            keep("floating_ip", f.description, f.id)
        for p in conn.network.ports(project_id=project):
            keep("port", p.name, p.id)
        for k in conn.compute.keypairs():
            keep("keypair", k.name, k.id)
        for g in conn.network.security_groups(project_id=project):
            keep("security_group", g.name, g.id)
        conn.close()
    return found


def burst_servers(sandbox) -> list:
    conn = sandbox.connect("sandbox-zuul")
    try:
        return [s for s in conn.compute.servers(details=False, name="^conformance-.*-burst-")]
    finally:
        conn.close()


def resource_counts(sandbox) -> dict[str, int]:
    """How many of every kind of resource a run could create exist in the whole cloud (all projects, as admin;
    keypairs belong to users, so those of both projects' users)."""
    admin = sandbox.admin()
    try:
        counts = {
            "servers": len(list(admin.compute.servers(details=False, all_projects=True))),
            "volumes": len(list(admin.block_storage.volumes(details=False, all_projects=True))),
            "volume_snapshots": len(list(admin.block_storage.snapshots(details=False, all_projects=True))),
            "volume_attachments": len(list(admin.block_storage.attachments(all_projects=True))),
            "images": len(list(admin.image.images())),
            "networks": len(list(admin.network.networks())),
            "subnets": len(list(admin.network.subnets())),
            "ports": len(list(admin.network.ports())),
            "routers": len(list(admin.network.routers())),
            "floating_ips": len(list(admin.network.ips())),
            "security_groups": len(list(admin.network.security_groups())),
            "security_group_rules": len(list(admin.network.security_group_rules())),
        }
    finally:
        admin.close()
    for cloud in PROJECT_CLOUDS:
        conn = sandbox.connect(cloud)
        try:
            counts[f"keypairs of {cloud}"] = len(list(conn.compute.keypairs()))
        finally:
            conn.close()
    return counts
