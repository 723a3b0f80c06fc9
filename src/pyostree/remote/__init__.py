"""Moving commits between repositories: pull, pull-local, static deltas, summaries, signatures.

``pull`` fetches over HTTP(S) and file:// through ``fetcher``; ``pull_local`` copies between
repositories on one machine; ``deltas`` reads, applies and generates static deltas; ``summary``
writes and reads the summary file; ``remotes`` is the remote configuration; ``gpg``, ``gpgkeys``
and ``sign`` verify and make signatures.

Layering: ``remote`` imports ``pyostree.tree``, ``pyostree.store`` and ``pyostree.errors``; never
``oci``, ``sysroot`` or ``cli``.
"""
