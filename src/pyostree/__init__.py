"""pyostree: OSTree in Python, on disk byte-compatible with libostree.

``import pyostree`` gives the porcelain (:mod:`pyostree.porcelain`): ``pyostree.init``,
``pyostree.commit``, ``pyostree.checkout``, ``pyostree.log``, ``pyostree.pull`` and the rest, named
as the ``pyostree`` command names them (docs/api.md).  They are loaded on first use: the command
line imports this package at every start, and its start-up must not pay for the whole library.

The packages below, lowest first: ``store`` (codec, objects, repository, refs, fsck, prune),
``tree`` (commit, checkout, whiteouts, tar import/export, diff), ``remote`` (pull, deltas,
summaries, signatures), ``oci`` (container images), ``sysroot`` (deployments), ``cli``.
"""

__version__ = "0.1.0"
OSTREE_COMPAT_VERSION = "2022.7"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from pyostree.porcelain import (
        CheckoutOptions,
        Commit,
        CommitModifier,
        DiffResult,
        ImportResult,
        LogEntry,
        Node,
        OstreeError,
        PullOptions,
        PullStats,
        Repo,
        RepoMode,
        cat,
        checkout,
        commit,
        container_import,
        diff,
        fsck,
        init,
        list_refs,
        log,
        ls,
        open_repo,
        prune,
        pull,
        pull_local,
        resolve_rev,
        set_ref,
        stat,
    )

__all__ = [
    "CheckoutOptions", "Commit", "CommitModifier", "DiffResult", "ImportResult", "LogEntry", "Node",
    "OstreeError", "PullOptions", "PullStats", "Repo", "RepoMode", "cat", "checkout", "commit",
    "container_import", "diff", "fsck", "init", "list_refs", "log", "ls", "open_repo", "prune",
    "pull", "pull_local", "resolve_rev", "set_ref", "stat",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from pyostree import porcelain

        value = getattr(porcelain, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyostree' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
