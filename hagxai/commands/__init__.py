"""Sub-commands of the ``hagxai`` command line; each module has ``add_parser`` and ``run``."""
