"""The ``pyostree`` command: a thin layer of option parsing over the library.

``main`` dispatches to one ``builtin_*`` module per command, imported only when that command runs,
so that start-up stays cheap; this is the one place where import timing is tuned.  Everything a
command does lives below: ``sysroot``, ``oci``, ``remote``, ``tree``, ``store``.
"""
