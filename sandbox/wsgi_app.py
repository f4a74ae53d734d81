"""gunicorn entry point for every sandbox API: `sandbox.wsgi_app:application`.

oslo.config inside the services parses sys.argv; under gunicorn that is gunicorn's own command line, which the
services reject (workers crash-loop). So argv is reset to what SANDBOX_WSGI_ARGS says before the service's WSGI
module (SANDBOX_WSGI_MODULE) is imported.
"""

import importlib
import os
import sys
import warnings

warnings.filterwarnings("ignore")
sys.argv = sys.argv[:1] + os.environ.get("SANDBOX_WSGI_ARGS", "").split()
application = importlib.import_module(os.environ["SANDBOX_WSGI_MODULE"]).application
