"""cinder-scheduler and cinder-volume from one import of Cinder: one parent that forks both.

Each of Cinder's daemons spends its start importing Cinder (1.3-1.7 CPU-seconds here, and they cannot be forked
from the sandbox's zygote: they monkey-patch with eventlet first thing). This parent imports Cinder once, creates
both services, then hands them to oslo.service's process launcher, which forks a child for each: what
cinder-volume itself does for each of its backends. Each service keeps a process of its own because Cinder keeps
a service's database id in a class attribute (`cinder.service.Service.service_id`, read by the heartbeat and by
the volume workers' cleanup records): two services in one process would heartbeat one row, and the other would
show "down" a minute after start. Both are listed in `openstack volume service list` as on a real cloud.
Started as `python -m sandbox.cinder_daemons --config-file cinder.conf`.
"""

from cinder import monkey_patch  # isort: skip

monkey_patch.patch()  # before anything else is imported, as cinder's own cmd modules do

import shlex  # noqa: E402
import sys  # noqa: E402

import os_brick  # noqa: E402
from cinder import objects, service, utils, version  # noqa: E402
from cinder.common import config, constants  # noqa: E402,F401  (config registers Cinder's global options)
from cinder.db import api as session  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402
from oslo_privsep import priv_context  # noqa: E402


def main() -> None:
    conf = cfg.CONF
    objects.register_all()
    conf(sys.argv[1:], project="cinder", version=version.version_string())
    logging.setup(conf, "cinder")
    priv_context.init(root_helper=shlex.split(utils.get_root_helper()))
    os_brick.setup(conf)
    backends = list(filter(None, conf.enabled_backends))
    if len(backends) != 1:
        sys.exit(f"cinder_daemons: expects one enabled backend, cinder.conf has {backends}")
    scheduler = service.Service.create(binary=constants.SCHEDULER_BINARY)
    volume = service.Service.create(
        host=f"{conf.host}@{backends[0]}",
        service_name=backends[0],
        binary=constants.VOLUME_BINARY,
        coordination=True,
    )
    session.dispose_engine()  # the children must not share the parent's database connections
    launcher = service.process_launcher()
    launcher.launch_service(scheduler)
    launcher.launch_service(volume)
    launcher.wait()


if __name__ == "__main__":
    main()
