"""Create Neutron's schema from its models and stamp the migration heads.

`neutron-db-manage upgrade heads` replays years of migrations (slow, and some fail outside MySQL); creating the
tables from the model metadata and stamping the heads gives the same schema in seconds.
Usage: python -m sandbox.neutron_schema NEUTRON_CONF DB_URL
"""

import subprocess
import sys
import warnings

from sandbox.layout import venv_bin

warnings.filterwarnings("ignore")


def main(config_file: str, db_url: str) -> int:
    import sqlalchemy
    from neutron.db.migration.models import head

    engine = sqlalchemy.create_engine(db_url)
    head.get_metadata().create_all(engine)
    engine.dispose()
    return subprocess.call([venv_bin("neutron-db-manage"), "--config-file", config_file, "stamp", "heads"])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
