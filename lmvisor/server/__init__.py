"""lmvisor.server: the daemon's HTTP API (ASGI), its process, and the `lmvisor` CLI.

`create_app(context)` builds the FastAPI app over a `ServerContext` (the
application tree's programs and optimization jobs, the runtime's tree, events
and metrics); `serve(config)` runs the daemon process;
`lmvisor.server.cli:main` is the `lmvisor` command (entered through `lmvisor.__main__`,
which also serves `python -m lmvisor`). Importing this package
loads nothing heavy until a name is used.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.server.app import create_app as create_app
    from lmvisor.server.context import ServerContext as ServerContext
    from lmvisor.server.context import server_context as server_context
    from lmvisor.server.daemon import Daemon as Daemon
    from lmvisor.server.daemon import run_daemon as run_daemon
    from lmvisor.server.daemon import serve as serve
    from lmvisor.server.errors import EXIT_FAILURE as EXIT_FAILURE
    from lmvisor.server.errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
    from lmvisor.server.errors import EXIT_OK as EXIT_OK
    from lmvisor.server.errors import EXIT_USAGE as EXIT_USAGE
    from lmvisor.server.errors import AppHookFailed as AppHookFailed
    from lmvisor.server.errors import AppLoadError as AppLoadError
    from lmvisor.server.errors import BodyTimeout as BodyTimeout
    from lmvisor.server.errors import ClientDisconnected as ClientDisconnected
    from lmvisor.server.errors import DaemonError as DaemonError
    from lmvisor.server.errors import DataDirInUse as DataDirInUse
    from lmvisor.server.errors import Draining as Draining
    from lmvisor.server.errors import HeadersTooLarge as HeadersTooLarge
    from lmvisor.server.errors import HeaderTimeout as HeaderTimeout
    from lmvisor.server.errors import InsecureBind as InsecureBind
    from lmvisor.server.errors import InvalidHeader as InvalidHeader
    from lmvisor.server.errors import InvalidInput as InvalidInput
    from lmvisor.server.errors import NoApplication as NoApplication
    from lmvisor.server.errors import NotAllowed as NotAllowed
    from lmvisor.server.errors import RequestError as RequestError
    from lmvisor.server.errors import RequestTooLarge as RequestTooLarge
    from lmvisor.server.errors import StartupError as StartupError
    from lmvisor.server.errors import Unauthorized as Unauthorized
    from lmvisor.server.host import RegisterHook as RegisterHook
    from lmvisor.server.host import load_register as load_register
    from lmvisor.server.host import open_context as open_context
    from lmvisor.server.http_errors import STATUS_BY_ERROR as STATUS_BY_ERROR
    from lmvisor.server.http_errors import ErrorBody as ErrorBody
    from lmvisor.server.http_errors import status_for as status_for
    from lmvisor.server.readiness import CheckResult as CheckResult
    from lmvisor.server.readiness import ReadinessCheck as ReadinessCheck
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
