"""cinder-scheduler and cinder-volume in one process, as Cinder's own `cinder-all` once ran them.

Each of Cinder's daemons spends its start importing Cinder (1.3-1.7 CPU-seconds here, and they cannot be forked
from the zygote: they monkey-patch with eventlet first thing). The sandbox's volume backend keeps volumes as
records only, so one process serves both: one import, one oslo.service launcher running both services as green
threads, each with its own RPC server and its own row in `openstack volume service list` (binaries
cinder-scheduler and cinder-volume, as on a real cloud). Started as
`python -m sandbox.cinder_daemons --config-file cinder.conf`.
"""

from cinder import monkey_patch  # isort: skip

monkey_patch.patch()  # before anything else is imported, as cinder's own cmd modules do

import shlex  # noqa: E402
import sys  # noqa: E402

import os_brick  # noqa: E402
from cinder import objects, service, utils, version  # noqa: E402
from cinder.common import config, constants  # noqa: E402,F401  (config registers Cinder's global options)
from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402
from oslo_privsep import priv_context  # noqa: E402
from oslo_service import service as oslo_service  # noqa: E402


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
    launcher = oslo_service.launch(conf, scheduler, restart_method="mutate")
    launcher.launch_service(volume)
    launcher.wait()


if __name__ == "__main__":
    main()
