"""jobtrail: a self-hosted tracker for asynchronous cloud media jobs.

The rooms live at the top of the repository (`core/`, `providers/`, `store/`,
`runtime/`, `listeners/`, `dispatch/`, `receiver/`, `console/`, `simulators/`) and install under
this one name: `jobtrail.core`, `jobtrail.store`, ... (in the repository, the entries
of this folder are links to them).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jobtrail")
except PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0+unknown"
